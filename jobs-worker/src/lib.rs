//! The worker runtime for `jobs-core`: it grows into the operator's deployable in later work.
