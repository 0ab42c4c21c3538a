//! FHIRPath engine (work in progress).
