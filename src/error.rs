//! The errors of l3mp's layers. Each layer (`run`, `replay`, `lab`, `bench`, `status`, the
//! demo) owns its `Error`, a failure as one line for the operator; a layer that builds on
//! another takes that one's error in with its text unchanged.

/// Defines the calling module's `Error` (with the doc comment given): a failure as one line
/// for the operator, made with `Error::new`, and taken in by `?` from each `from` type, its
/// text unchanged.
macro_rules! line_error {
    ($(#[$doc:meta])* $(from $($from:ty),+)?) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct Error(String);

        impl Error {
            /// An error saying `what`.
            pub fn new(what: impl Into<String>) -> Error {
                Error(what.into())
            }
        }

        impl std::fmt::Display for Error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::error::Error for Error {}

        $($(
            impl From<$from> for Error {
                fn from(e: $from) -> Error {
                    Error(e.to_string())
                }
            }
        )+)?
    };
}

pub(crate) use line_error;
