//! Profile engine: FHIR package loading, snapshot generation and validation against
//! StructureDefinitions (JP-Core / JP-CLINS), with FHIRPath invariants and value-set bindings.
//!
//! ```no_run
//! use fhir_profiles::{PackageStore, Validator, ValidationOptions, to_operation_outcome};
//! let store = PackageStore::load(&["../shared/fhir-packages".into()]).unwrap();
//! let validator = Validator::new(store);
//! let resource: serde_json::Value = serde_json::from_str("{\"resourceType\":\"Patient\"}").unwrap();
//! let issues = validator.validate(&resource, &ValidationOptions::default());
//! println!("{}", to_operation_outcome(&issues));
//! ```

pub mod issue;
pub mod operation;
pub mod primitives;
pub mod profile;
pub mod rules;
pub mod snapshot;
pub mod store;
pub mod terminology;
pub mod validator;
pub mod xml;

pub use issue::{Issue, Severity, has_errors, to_operation_outcome};
pub use operation::{validate_file_bytes, validate_operation};
pub use profile::CompiledProfile;
pub use rules::GatewayRules;
pub use snapshot::generate_snapshot;
pub use store::{LoadError, PackageInfo, PackageStore};
pub use terminology::{Membership, PackageTerminology, Terminology};
pub use validator::{ValidationOptions, Validator, parse_json};
pub use xml::parse_xml;
