//! Profile engine (work in progress).
