//! The secret key kept in a peer's data dir ([`KEY_FILE`]), made on the first run.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Identity;

/// The key file inside a peer's data dir: the 32-byte secret seed, readable by its owner only.
pub const KEY_FILE: &str = "identity.key";

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write the identity key {0}: {1}")]
    Io(PathBuf, String),
    #[error("the identity key {0} is not a 32-byte key; move it away to make a new identity")]
    Corrupt(PathBuf),
}

impl Identity {
    /// The key in `dir/identity.key`, made (mode 0600) if there is none yet.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE);
        let io = |e: std::io::Error| IdentityError::Io(path.clone(), e.to_string());
        match std::fs::read(&path) {
            Ok(bytes) => {
                let seed: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| IdentityError::Corrupt(path.clone()))?;
                Ok(Identity::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::storage::create_private_dir(dir).map_err(io)?;
                let identity = Identity::ephemeral();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(io)?;
                file.write_all(identity.seed()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(identity)
            }
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Corrupt(_))
        ));
    }
}
