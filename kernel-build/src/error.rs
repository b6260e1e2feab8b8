//! [`Error`]: why code generation failed.

/// Code generation failed; the build script should fail with it (its `Display` says what and
/// where). Every variant is permanent: fix the `.proto` files or the build script.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `.proto` file is missing, does not parse or does not type-check.
    #[error("cannot compile the .proto files: {0}")]
    Proto(#[from] protox::Error),
    /// A kernel option (`kernel/options.proto`) has a value the kernel cannot serve.
    #[error("invalid option on {target}: {reason}")]
    InvalidOption {
        /// The service or rpc it is set on (`acme.shop.v1.Shop.GetItem`).
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// The kernel has no streaming calls: a request has one reply.
    #[error("{0} streams; kernel endpoints take one request and give one reply")]
    Streaming(String),
    /// A `.proto` file has no `package`: the generated module is named after it.
    #[error("{0} has no package; kernel-build needs one (e.g. `package acme.shop.v1;`)")]
    NoPackage(String),
    /// Neither [`Builder::out_dir`](crate::Builder::out_dir) nor `OUT_DIR` (set by cargo for
    /// build scripts) says where to write.
    #[error("OUT_DIR is not set: call kernel-build from a build script, or set out_dir")]
    NoOutDir,
    /// prost-build or pbjson-build failed, or a file could not be written.
    #[error("cannot generate code: {0}")]
    Io(#[from] std::io::Error),
}
