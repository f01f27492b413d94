//! The helpers every Hangar crate shares, in one place so that each rule is
//! written once: files that hold secrets are private ([`fs`]), secrets are
//! 128 or 256 random bits ([`random`]), and a panicked holder never takes a
//! lock down with it ([`sync`]). No dependency on any other Hangar crate.

pub mod fs {
    //! Directories (0700) and files (0600) that only Hangar's user can read.

    use std::io::Write;
    use std::path::Path;

    /// Creates `dir` and missing parents with mode 0700; an existing
    /// directory is left as it is.
    pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)
    }

    /// Options that create a file with mode 0600.
    pub fn private_options() -> std::fs::OpenOptions {
        let mut options = std::fs::OpenOptions::new();
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
    }

    /// Creates `path` (0600) holding `bytes`; fails if it exists, so that two
    /// processes creating one key never overwrite each other's.
    pub fn create_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        private_options()
            .write(true)
            .create_new(true)
            .open(path)?
            .write_all(bytes)
    }

    /// Replaces `path` with `bytes` through a 0600 temporary file and a
    /// rename: a reader never sees half a file, nobody else ever can.
    pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = private_options()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}

pub mod random {
    //! Unguessable values from the OS-seeded CSPRNG.

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use rand::RngCore as _;

    /// `n` random bytes.
    pub fn bytes(n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        rand::rng().fill_bytes(&mut buf);
        buf
    }

    /// `n` random bytes, lowercase hex (session ids: 16 bytes = 128 bits).
    pub fn hex(n: usize) -> String {
        bytes(n).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `n` random bytes, base64url without padding (tokens, state, nonces,
    /// PKCE verifiers: 32 bytes = 43 characters).
    pub fn token(n: usize) -> String {
        URL_SAFE_NO_PAD.encode(bytes(n))
    }
}

pub mod sync {
    //! Locks that survive a panic of whoever held them: the data behind a
    //! router's lock is kept consistent by each short critical section, so
    //! a panic elsewhere must not turn every later request into one too.

    use std::sync::{Mutex, MutexGuard};

    /// Locks `m`, recovering the guard if a holder panicked.
    pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("hangar-common-{}", random::hex(8)));
        let dir = base.join("a/b");
        fs::create_private_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let f = dir.join("key");
        fs::create_private_file(&f, b"one").unwrap();
        assert!(
            fs::create_private_file(&f, b"two").is_err(),
            "never overwrites"
        );
        fs::write_private(&dir.join("record"), b"x").unwrap();
        for p in [f, dir.join("record")] {
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn random_values_have_their_length_and_differ() {
        assert_eq!(random::hex(16).len(), 32);
        assert_eq!(random::token(32).len(), 43);
        assert_ne!(random::token(32), random::token(32));
    }

    #[test]
    fn a_poisoned_lock_still_locks() {
        let m = std::sync::Arc::new(std::sync::Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *sync::lock(&m) += 1;
        assert_eq!(*sync::lock(&m), 2);
    }
}
