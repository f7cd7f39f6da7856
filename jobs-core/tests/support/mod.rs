//! What the failure-path tests share.
#![allow(dead_code, reason = "each test binary uses a part of it")]

pub(crate) mod broker;
pub(crate) mod faulty;
