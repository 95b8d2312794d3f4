//! A simulated filesystem for crash-consistency tests.
//!
//! [`SimFs`] keeps, for every file, the bytes written and how many of them are durable, and for
//! every directory, the entries that were there at its last `sync_dir`. [`SimFs::power_loss`]
//! returns the disk as a machine would find it after losing power: only durable directory
//! entries, and for each file its durable bytes plus, depending on [`Torn`], none, all or a
//! random part of the bytes written after the last sync (a torn write).
//!
//! [`SimFs::fail_after`] makes every operation after the next `n` fail, which lets a test stop
//! the engine at every step of a workload in turn. [`SimFs::fail_syncs`] makes fsync fail, to
//! check that the engine refuses further writes instead of retrying.
//!
//! Invariant: a `SimFs` only ever loses what a real disk may lose: bytes not covered by a
//! completed `sync`, and directory changes not covered by a completed `sync_dir`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use rand::Rng;

use crate::fs::{DirLock, Fs, FsFile, FsRead};

/// What happens to bytes written after the last sync when power is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Torn {
    /// They are lost.
    None,
    /// They all reached the disk.
    All,
    /// A random prefix of them reached the disk.
    Random,
}

#[derive(Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    durable_len: usize,
}

type FileRef = Arc<Mutex<SimFile>>;

#[derive(Debug, Default)]
struct State {
    live: BTreeMap<PathBuf, FileRef>,
    durable: BTreeMap<PathBuf, FileRef>,
    dirs: BTreeSet<PathBuf>,
    locked: BTreeSet<PathBuf>,
    ops_left: Option<u64>,
    fail_syncs: bool,
    read_faults: u64,
}

/// An in-memory filesystem that separates written from durable data.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn crashed() -> io::Error {
    io::Error::other("simulated power loss: the disk is gone")
}

impl SimFs {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// After `n` more operations, every operation fails as if the machine had lost power.
    pub fn fail_after(&self, n: u64) {
        self.state.lock().ops_left = Some(n);
    }

    /// Makes every later `sync` and `sync_dir` fail with an I/O error.
    pub fn fail_syncs(&self, fail: bool) {
        self.state.lock().fail_syncs = fail;
    }

    /// Makes the next `n` positional reads fail with an I/O error (EIO), as a flaky disk or a
    /// descriptor shortage (EMFILE) would; later reads succeed again.
    pub fn fail_reads(&self, n: u64) {
        self.state.lock().read_faults = n;
    }

    /// How many operations have been allowed so far is not tracked; this reports whether the
    /// simulated power loss has struck.
    pub fn has_failed(&self) -> bool {
        self.state.lock().ops_left == Some(0)
    }

    /// The disk as found after a power loss now.
    pub fn power_loss(&self, torn: Torn) -> SimFs {
        let st = self.state.lock();
        let mut rng = rand::rng();
        let mut durable = BTreeMap::new();
        for (path, file) in &st.durable {
            let f = file.lock();
            let extra = f.data.len() - f.durable_len;
            let keep = f.durable_len
                + match torn {
                    Torn::None => 0,
                    Torn::All => extra,
                    Torn::Random => rng.random_range(0..=extra),
                };
            let data = f.data[..keep].to_vec();
            durable.insert(
                path.clone(),
                Arc::new(Mutex::new(SimFile {
                    durable_len: data.len(),
                    data,
                })),
            );
        }
        SimFs {
            state: Arc::new(Mutex::new(State {
                live: durable.clone(),
                durable,
                dirs: st.dirs.clone(),
                locked: BTreeSet::new(),
                ops_left: None,
                fail_syncs: false,
                read_faults: 0,
            })),
        }
    }

    /// The bytes currently written to `path` (durable or not), for tests that corrupt files.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        st.live.get(path).map(|f| f.lock().data.clone())
    }

    /// Replaces the bytes of `path`, all durable, for tests that corrupt files.
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let st = self.state.lock();
        if let Some(f) = st.live.get(path) {
            let mut f = f.lock();
            f.durable_len = data.len();
            f.data = data;
        }
    }

    /// Every file path on the disk.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state.lock().live.keys().cloned().collect()
    }

    fn step(st: &mut State) -> io::Result<()> {
        match &mut st.ops_left {
            Some(0) => Err(crashed()),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn op(&self) -> io::Result<MutexGuard<'_, State>> {
        let mut st = self.state.lock();
        Self::step(&mut st)?;
        Ok(st)
    }
}

#[derive(Debug)]
struct SimHandle {
    fs: SimFs,
    file: FileRef,
}

impl FsFile for SimHandle {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut st = self.fs.state.lock();
        if st.ops_left == Some(0) {
            return Err(crashed());
        }
        // A write that is cut by the power loss may land partly.
        if let Some(n) = &mut st.ops_left {
            *n -= 1;
            if *n == 0 {
                let half = buf.len() / 2;
                self.file.lock().data.extend_from_slice(&buf[..half]);
                return Err(crashed());
            }
        }
        self.file.lock().data.extend_from_slice(buf);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let st = self.fs.op()?;
        if st.fail_syncs {
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        let mut f = self.file.lock();
        f.durable_len = f.data.len();
        Ok(())
    }
}

impl FsRead for SimHandle {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        {
            let mut st = self.fs.state.lock();
            if st.read_faults > 0 {
                st.read_faults -= 1;
                return Err(io::Error::other("simulated read failure (EIO)"));
            }
        }
        let f = self.file.lock();
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::InvalidInput)?;
        let src = f.data.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Fs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.op()?;
        for a in dir.ancestors() {
            st.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.op()?;
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let mut names: Vec<String> = st
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.extend(
            st.dirs
                .iter()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        Ok(names)
    }
    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.live.contains_key(path) || st.dirs.contains(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut st = self.op()?;
        if st.live.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let file = FileRef::default();
        st.live.insert(path.to_path_buf(), file.clone());
        Ok(Box::new(SimHandle {
            fs: self.clone(),
            file,
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let st = self.op()?;
        let file = st.live.get(path).cloned().ok_or_else(|| not_found(path))?;
        Ok(Box::new(SimHandle {
            fs: self.clone(),
            file,
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FsRead>> {
        let st = self.state.lock();
        let file = st.live.get(path).cloned().ok_or_else(|| not_found(path))?;
        Ok(Arc::new(SimHandle {
            fs: self.clone(),
            file,
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.state.lock();
        let file = st.live.get(path).ok_or_else(|| not_found(path))?;
        Ok(file.lock().data.clone())
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let st = self.op()?;
        let file = st.live.get(path).ok_or_else(|| not_found(path))?;
        let mut f = file.lock();
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        f.data.truncate(len);
        f.durable_len = f.durable_len.min(len);
        // set_len + sync_all: the new length is durable.
        f.durable_len = f.data.len();
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.op()?;
        st.live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.op()?;
        let file = st.live.remove(from).ok_or_else(|| not_found(from))?;
        st.live.insert(to.to_path_buf(), file);
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.op()?;
        if st.fail_syncs {
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        st.durable.retain(|p, _| !in_dir(p));
        let entries: Vec<(PathBuf, FileRef)> = st
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, f)| (p.clone(), f.clone()))
            .collect();
        st.durable.extend(entries);
        Ok(())
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let mut st = self.op()?;
        if !st.locked.insert(dir.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another handle", dir.display()),
            ));
        }
        Ok(DirLock::new(Box::new(SimLock {
            fs: self.clone(),
            dir: dir.to_path_buf(),
        })))
    }
}

struct SimLock {
    fs: SimFs,
    dir: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.state.lock().locked.remove(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_bytes_and_entries_are_lost() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let mut a = fs.create(&dir.join("a")).unwrap();
        a.append(b"hello").unwrap();
        a.sync().unwrap();
        fs.sync_dir(dir).unwrap();
        a.append(b" world").unwrap();
        let mut b = fs.create(&dir.join("b")).unwrap();
        b.append(b"x").unwrap();
        b.sync().unwrap(); // synced data but the entry itself was never made durable

        let after = fs.power_loss(Torn::None);
        assert_eq!(after.read(&dir.join("a")).unwrap(), b"hello");
        assert!(!after.exists(&dir.join("b")));
        let all = fs.power_loss(Torn::All);
        assert_eq!(all.read(&dir.join("a")).unwrap(), b"hello world");
    }

    #[test]
    fn fail_after_stops_every_later_operation() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.fail_after(1);
        let mut f = fs.create(Path::new("/d/f")).unwrap();
        assert!(f.append(b"abcd").is_err());
        assert!(fs.sync_dir(Path::new("/d")).is_err());
        assert!(fs.has_failed());
    }
}
