//! The aerekos service image, built by the worker from its own executable through the Docker API.
//! No registry is assumed reachable, so nothing is pulled: the image is `FROM scratch` with the
//! `aerekos` executable as its entrypoint, which therefore has to be statically linked.

use std::path::Path;

/// The tag of the service image for this version of aerekos.
pub fn service_image_tag() -> String {
    format!("aerekos/aerekos:{}", env!("CARGO_PKG_VERSION"))
}

/// Whether `elf` is an executable that needs no dynamic loader (no `PT_INTERP` program header), so
/// it can run in an empty (`scratch`) image.
pub fn is_static_executable(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    // 64-bit little-endian ELF only (what this project builds for).
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u64_at =
        |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8 bytes")) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        at + 4 <= elf.len()
            && u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) != PT_INTERP
    })
}

/// The build context: a Dockerfile and the executable, as a tar archive.
pub fn build_context(executable: &[u8]) -> std::io::Result<Vec<u8>> {
    let dockerfile = "FROM scratch\nCOPY aerekos /aerekos\nENTRYPOINT [\"/aerekos\"]\n";
    let mut archive = tar::Builder::new(Vec::new());
    for (name, mode, data) in [
        ("Dockerfile", 0o644, dockerfile.as_bytes()),
        ("aerekos", 0o755, executable),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive.append_data(&mut header, name, data)?;
    }
    archive.into_inner()
}

/// Whether the file at `path` is a static executable ([`is_static_executable`]).
pub fn is_static_file(path: &Path) -> std::io::Result<bool> {
    use std::io::Read as _;
    // The ELF and program headers sit in the first few KiB: no need to read a large binary to refuse it.
    let mut head = vec![0u8; 16 * 1024];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    head.truncate(n);
    Ok(is_static_executable(&head))
}

/// Reads `path` once its headers show it can be the image's entrypoint.
pub fn read_static_executable(path: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    if is_static_file(path).map_err(cannot)? {
        std::fs::read(path).map_err(cannot)
    } else {
        Err(format!(
            "{} is dynamically linked, so it cannot run in a scratch image; build aerekos statically \
             (RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu)",
            path.display()
        ))
    }
}
