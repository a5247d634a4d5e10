//! Helpers shared by every integration test: throwaway PostgreSQL clusters and the dbagent
//! command under test.

#![allow(dead_code)]

pub mod cluster;
pub mod collect;
pub mod dbagent;
pub mod restore;
pub mod sessions;
pub mod sidecar;
