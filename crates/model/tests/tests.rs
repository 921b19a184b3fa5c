//! Property tests and corpus replay for the adapters: no input panics, every rejection says
//! why, and valid records keep their fields.

mod corpus;
mod governance;
mod properties;
mod vendor;
