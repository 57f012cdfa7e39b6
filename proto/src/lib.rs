//! Keel's wire and storage formats.
//!
//! Everything Keel puts on the wire (dispatcher ↔ worker gRPC) or into ZooKeeper is a prost
//! message defined in `proto/keel.proto`. This crate only holds the generated code and the
//! format-version constants, and [`security`]: how internal gRPC channels and servers and the
//! REST server are secured.

#![allow(clippy::all)]

pub mod security;

/// Generated from `proto/keel.proto` (package `keel.v1`).
pub mod v1 {
    tonic::include_proto!("keel.v1");
}

/// Format version written into [`v1::LeaderInfo`] and [`v1::ContenderInfo`].
pub const FORMAT_VERSION: u32 = 1;
