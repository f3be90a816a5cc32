//! anchorage: a certificate authority and trust-bundle service for Direct secure health
//! messaging. The library holds every use case; the `anchorage` binary is a thin CLI over it.

pub mod accounts;
pub mod audit;
pub mod authority;
pub mod bundle;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod error;
pub mod external;
pub mod http;
pub mod inventory;
pub mod keyseal;
pub mod model;
pub mod organisations;
pub mod pkcs12;
pub mod policy;
pub mod private_files;
pub mod refresh;
pub mod store;
pub mod x509;

pub use error::{Error, Result};
