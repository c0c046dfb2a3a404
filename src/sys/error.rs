//! The error type of the system layer.

use std::{fmt, io};

/// A failed system operation: what was being done (naming the interface,
/// address or namespace concerned) and why it failed.
///
/// The `Display` text is complete on its own (context, cause and the kernel's
/// extended acknowledgement message when there is one), so `source()` is
/// always `None`; use [`SysError::errno`] to test for a specific errno.
#[derive(Debug)]
pub struct SysError {
    context: String,
    cause: Cause,
}

#[derive(Debug)]
enum Cause {
    /// An errno from a syscall or from a netlink error reply.
    Os {
        error: io::Error,
        /// The kernel's extended acknowledgement text, if it sent one.
        detail: Option<String>,
    },
    /// A failure that has no errno, described in words.
    Other(String),
}

impl SysError {
    /// An error carrying an OS error (errno) from a syscall.
    pub(crate) fn os(context: impl Into<String>, error: io::Error) -> Self {
        let cause = Cause::Os {
            error,
            detail: None,
        };
        SysError {
            context: context.into(),
            cause,
        }
    }

    /// An error carrying an errno and, optionally, the kernel's explanation.
    pub(crate) fn kernel(context: impl Into<String>, errno: i32, detail: Option<String>) -> Self {
        let error = io::Error::from_raw_os_error(errno);
        SysError {
            context: context.into(),
            cause: Cause::Os { error, detail },
        }
    }

    /// An error without an errno.
    pub(crate) fn other(context: impl Into<String>, reason: impl Into<String>) -> Self {
        SysError {
            context: context.into(),
            cause: Cause::Other(reason.into()),
        }
    }

    /// The errno behind this error, if it came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        match &self.cause {
            Cause::Os { error, .. } => error.raw_os_error(),
            Cause::Other(_) => None,
        }
    }

    /// What was being done when the error happened.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl From<nix::Error> for Cause {
    fn from(errno: nix::Error) -> Self {
        Cause::Os {
            error: io::Error::from(errno),
            detail: None,
        }
    }
}

/// Adds a context to a `nix` result, turning it into a [`SysError`].
pub(crate) trait NixContext<T> {
    /// Wraps the error with the context computed by `context`.
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T, SysError>;
}

impl<T> NixContext<T> for nix::Result<T> {
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T, SysError> {
        self.map_err(|errno| SysError {
            context: context(),
            cause: Cause::from(errno),
        })
    }
}

/// Adds a context to an `std::io` result, turning it into a [`SysError`].
pub(crate) trait IoContext<T> {
    /// Wraps the error with the context computed by `context`.
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T, SysError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T, SysError> {
        self.map_err(|error| SysError::os(context(), error))
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.context)?;
        match &self.cause {
            Cause::Os {
                error,
                detail: Some(detail),
            } => write!(f, "{error} ({detail})"),
            Cause::Os {
                error,
                detail: None,
            } => write!(f, "{error}"),
            Cause::Other(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for SysError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_context_cause_and_kernel_detail() {
        let err = SysError::kernel(
            "setting MTU 70000 on link 3 (\"v0\")",
            libc::EINVAL,
            Some("MTU too big".into()),
        );
        let text = err.to_string();
        assert!(
            text.starts_with("setting MTU 70000 on link 3 (\"v0\"): "),
            "{text}"
        );
        assert!(text.ends_with("(MTU too big)"), "{text}");
        assert_eq!(err.errno(), Some(libc::EINVAL));
    }

    #[test]
    fn other_errors_have_no_errno() {
        let err = SysError::other("resolving 10.0.0.2 on eth1", "timed out");
        assert_eq!(err.to_string(), "resolving 10.0.0.2 on eth1: timed out");
        assert_eq!(err.errno(), None);
        assert_eq!(err.context(), "resolving 10.0.0.2 on eth1");
    }

    #[test]
    fn nix_and_io_contexts_keep_the_errno() {
        let nix_err: nix::Result<()> = Err(nix::errno::Errno::ENODEV);
        let err = nix_err.context_with(|| "opening x".into()).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENODEV));
        let io_err: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EPERM));
        let err = io_err.context_with(|| "opening y".into()).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EPERM));
        assert!(err.to_string().starts_with("opening y: "));
    }
}
