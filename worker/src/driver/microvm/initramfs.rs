//! The guest's root filesystem as an initramfs: a newc cpio archive, the format the kernel
//! unpacks into its first (RAM) filesystem. Built by the worker for each microVM from the
//! instance's root filesystem (a directory, a tarball, or a local Docker image exported), with
//! the guest agent, its plan and the kernel modules it loads under `/.aerekos`.

use std::{
    collections::HashSet,
    io::{Read, Write},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Component, Path, PathBuf},
};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// A newc cpio archive being written. Paths are relative to the guest's `/`; missing parent
/// directories are added first (the kernel's unpacker does not make them), and a path given
/// twice keeps its first entry.
pub struct Cpio<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    seen: HashSet<PathBuf>,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            next_ino: 1,
            seen: HashSet::new(),
        }
    }

    /// The guest path `path` names, or None when it would leave the root (`..`, absolute parts).
    fn clean(path: &Path) -> Option<PathBuf> {
        let mut clean = PathBuf::new();
        for part in path.components() {
            match part {
                Component::Normal(p) => clean.push(p),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        (!clean.as_os_str().is_empty()).then_some(clean)
    }

    fn header(&mut self, name: &Path, mode: u32, size: u64) -> std::io::Result<()> {
        let name = name.as_os_str().as_encoded_bytes();
        let size = u32::try_from(size).map_err(|_| {
            std::io::Error::other("a file of the root filesystem is larger than 4 GiB")
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid: root
            0, // gid
            1, // nlink
            0, // mtime
            size,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        let mut head = String::from("070701");
        for f in fields {
            head.push_str(&format!("{f:08x}"));
        }
        self.put(head.as_bytes())?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> std::io::Result<()> {
        let rem = (4 - self.written % 4) % 4;
        self.put(&[0u8; 3][..rem as usize])
    }

    /// Adds `path`'s missing parents; false when `path` itself was added before (or is not a
    /// path inside the root).
    fn begin(&mut self, path: &Path) -> std::io::Result<Option<PathBuf>> {
        let Some(path) = Self::clean(path) else {
            return Ok(None);
        };
        if self.seen.contains(&path) {
            return Ok(None);
        }
        let parents: Vec<PathBuf> = path
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty() && !self.seen.contains(*p))
            .map(Path::to_path_buf)
            .collect();
        for parent in parents.into_iter().rev() {
            self.header(&parent, S_IFDIR | 0o755, 0)?;
            self.seen.insert(parent);
        }
        self.seen.insert(path.clone());
        Ok(Some(path))
    }

    pub fn dir(&mut self, path: impl AsRef<Path>, perm: u32) -> std::io::Result<()> {
        if let Some(path) = self.begin(path.as_ref())? {
            self.header(&path, S_IFDIR | (perm & 0o7777), 0)?;
        }
        Ok(())
    }

    pub fn file(
        &mut self,
        path: impl AsRef<Path>,
        perm: u32,
        size: u64,
        data: &mut impl Read,
    ) -> std::io::Result<()> {
        let Some(path) = self.begin(path.as_ref())? else {
            return Ok(());
        };
        self.header(&path, S_IFREG | (perm & 0o7777), size)?;
        let copied = std::io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(std::io::Error::other(format!(
                "{} ended after {copied} of {size} bytes",
                path.display()
            )));
        }
        self.written += copied;
        self.pad()
    }

    pub fn bytes(&mut self, path: impl AsRef<Path>, perm: u32, data: &[u8]) -> std::io::Result<()> {
        self.file(path, perm, data.len() as u64, &mut &data[..])
    }

    pub fn symlink(&mut self, path: impl AsRef<Path>, target: &Path) -> std::io::Result<()> {
        let Some(path) = self.begin(path.as_ref())? else {
            return Ok(());
        };
        let target = target.as_os_str().as_encoded_bytes();
        self.header(&path, S_IFLNK | 0o777, target.len() as u64)?;
        self.put(target)?;
        self.pad()
    }

    /// The host directory `dir` as the guest's `/` (regular files, directories and symlinks;
    /// devices, sockets and pipes are left out).
    pub fn tree(&mut self, dir: &Path) -> std::io::Result<()> {
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for entry in std::fs::read_dir(dir.join(&rel))? {
                let entry = entry?;
                let rel = rel.join(entry.file_name());
                let meta = std::fs::symlink_metadata(entry.path())?;
                let perm = meta.permissions().mode();
                if meta.file_type().is_symlink() {
                    self.symlink(&rel, &std::fs::read_link(entry.path())?)?;
                } else if meta.is_dir() {
                    self.dir(&rel, perm)?;
                    stack.push(rel);
                } else if meta.is_file() {
                    let mut file = std::fs::File::open(entry.path())?;
                    self.file(&rel, perm, meta.size(), &mut file)?;
                }
            }
        }
        Ok(())
    }

    /// A tar archive (a Docker export, or an operator's tarball) as the guest's `/`. A hard link
    /// becomes a symlink to its target.
    pub fn tar(&mut self, archive: impl Read) -> std::io::Result<()> {
        let mut archive = tar::Archive::new(archive);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let perm = entry.header().mode().unwrap_or(0o644);
            match entry.header().entry_type() {
                tar::EntryType::Directory => self.dir(&path, perm)?,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    self.file(&path, perm, size, &mut entry)?
                }
                tar::EntryType::Symlink => {
                    if let Some(target) = entry.link_name()? {
                        self.symlink(&path, &target)?;
                    }
                }
                tar::EntryType::Link => {
                    if let Some(target) = entry.link_name()? {
                        self.symlink(&path, &Path::new("/").join(target))?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Ends the archive.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.header(Path::new("TRAILER!!!"), 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The kernel modules to load for `wanted` (by name), dependencies first, from
/// `<modules_dir>/modules.dep`; a module built into the kernel (in `modules.builtin`) needs none.
pub fn modules_in_order(modules_dir: &Path, wanted: &[&str]) -> std::io::Result<Vec<PathBuf>> {
    let deps = std::fs::read_to_string(modules_dir.join("modules.dep"))?;
    let builtin = std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    let name_of = |path: &str| {
        Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split('.').next().unwrap_or(n).replace('-', "_"))
            .unwrap_or_default()
    };
    let table: Vec<(String, String, Vec<String>)> = deps
        .lines()
        .filter_map(|line| {
            let (module, needs) = line.split_once(':')?;
            Some((
                name_of(module),
                module.to_owned(),
                needs.split_whitespace().map(str::to_owned).collect(),
            ))
        })
        .collect();
    let mut order: Vec<PathBuf> = vec![];
    fn visit(
        path: &str,
        table: &[(String, String, Vec<String>)],
        modules_dir: &Path,
        order: &mut Vec<PathBuf>,
    ) {
        let full = modules_dir.join(path);
        if order.contains(&full) {
            return;
        }
        if let Some((_, _, needs)) = table.iter().find(|(_, p, _)| p == path) {
            for need in needs {
                visit(need, table, modules_dir, order);
            }
        }
        order.push(full);
    }
    for name in wanted {
        match table.iter().find(|(n, _, _)| n == name) {
            Some((_, path, _)) => visit(path, &table, modules_dir, &mut order),
            None if builtin.lines().any(|l| name_of(l) == *name) => {}
            None => {
                return Err(std::io::Error::other(format!(
                    "kernel module {name} is neither in {} nor built in",
                    modules_dir.join("modules.dep").display()
                )));
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_padded_parents_come_first_and_paths_stay_inside() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.bytes("a/b/c.txt", 0o644, b"hello").unwrap();
        cpio.bytes("../escape", 0o644, b"no").unwrap();
        cpio.bytes("a/b/c.txt", 0o644, b"second").unwrap();
        let out = cpio.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        let a = text.find("a\0").unwrap();
        let ab = text.find("a/b\0").unwrap();
        let file = text.find("a/b/c.txt\0").unwrap();
        assert!(a < ab && ab < file);
        assert!(text.contains("hello") && !text.contains("second") && !text.contains("escape"));
        // The trailer's name (with its NUL) ends the archive, padded to 4 bytes.
        let trailer = text.rfind("TRAILER!!!\0").unwrap();
        assert!(out.len() - (trailer + 11) < 4);
    }
}
