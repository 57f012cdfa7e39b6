//! Keel's storage directory (OpenDAL), blob format and RocksDB local state.
//!
//! Not built yet: the jobs-and-checkpoints work (issue 3) fills this crate. It is a member of
//! the workspace so the layout in DESIGN.md holds from the start; it exports nothing.
