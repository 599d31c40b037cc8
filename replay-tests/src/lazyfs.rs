//! A FUSE file system that models a disk's page cache, for power-loss tests: every
//! write lands in memory and is what readers see, but only what was fsynced survives
//! a cut. File data becomes durable on `fsync`/`fdatasync` of that file; a directory's
//! entries (create, rename, unlink) become durable only on `fsync` of that directory,
//! which is POSIX's rule and stricter than ext4's journal usually is.
//!
//! After each flush (file or directory) the durable image is recorded, together with
//! a "torn" image for a file flush: the previous durable image where that file has
//! kept half of the bytes it was growing by (a cut in the middle of the fsync). Any
//! recorded [`Image`] can be written out to a real directory and opened as the disk
//! would be found after the power came back. Nothing is done lazily on a timer: every
//! un-synced byte is lost at a cut (the adversarial case of LazyFS).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

const PAGE: usize = 64 * 1024;
const TTL: Duration = Duration::ZERO;

/// A file's bytes as shared copy-on-write pages, so recording an image is cheap.
#[derive(Clone, Default)]
struct Data {
    pages: Vec<Arc<Vec<u8>>>,
    len: u64,
}

impl Data {
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        let end = offset + bytes.len() as u64;
        while (self.pages.len() * PAGE) < end as usize {
            self.pages.push(Arc::new(vec![0; PAGE]));
        }
        let mut at = offset as usize;
        let mut rest = bytes;
        while !rest.is_empty() {
            let (p, o) = (at / PAGE, at % PAGE);
            let n = rest.len().min(PAGE - o);
            Arc::make_mut(&mut self.pages[p])[o..o + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            at += n;
        }
        self.len = self.len.max(end);
    }

    fn read(&self, offset: u64, size: usize) -> Vec<u8> {
        let end = (offset + size as u64).min(self.len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset as usize;
        while (at as u64) < end {
            let (p, o) = (at / PAGE, at % PAGE);
            let n = (PAGE - o).min((end as usize) - at);
            out.extend_from_slice(&self.pages[p][o..o + n]);
            at += n;
        }
        out
    }

    fn truncate(&mut self, len: u64) {
        if len < self.len {
            let keep = (len as usize).div_ceil(PAGE);
            self.pages.truncate(keep);
            let o = len as usize % PAGE;
            if o != 0 {
                if let Some(last) = self.pages.last_mut() {
                    Arc::make_mut(last)[o..].fill(0);
                }
            }
        } else {
            while self.pages.len() * PAGE < len as usize {
                self.pages.push(Arc::new(vec![0; PAGE]));
            }
        }
        self.len = len;
    }
}

enum Node {
    File {
        data: Data,
        perm: u16,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        perm: u16,
    },
}

/// What a disk holds after a cut: durable directory entries and file contents.
#[derive(Clone, Default)]
pub struct Image {
    dirs: HashMap<u64, BTreeMap<OsString, u64>>,
    files: HashMap<u64, Data>,
    kinds: HashMap<u64, FileType>,
}

impl Image {
    /// Writes this image out under `dir` (which must exist and be empty).
    pub fn materialize(&self, dir: &Path) -> std::io::Result<()> {
        self.write_dir(1, dir)
    }

    fn write_dir(&self, ino: u64, dir: &Path) -> std::io::Result<()> {
        let Some(entries) = self.dirs.get(&ino) else {
            return Ok(());
        };
        for (name, child) in entries {
            let path = dir.join(name);
            match self.kinds.get(child) {
                Some(FileType::Directory) => {
                    std::fs::create_dir(&path)?;
                    self.write_dir(*child, &path)?;
                }
                _ => {
                    let data = self.files.get(child).cloned().unwrap_or_default();
                    std::fs::write(&path, data.read(0, data.len as usize))?;
                }
            }
        }
        Ok(())
    }
}

/// One recorded cut point.
#[derive(Clone)]
pub struct Cut {
    /// Position in the shared [`Timeline`] of the flush this cut is about.
    pub mark: usize,
    /// `false`: the flush completed (cut right after it). `true`: the cut came in the
    /// middle of it, part of the file's new bytes reached the disk.
    pub torn: bool,
    pub image: Image,
}

/// What happened, in order: flushes (by the file system) and whatever the workload
/// records (acknowledgements), so a cut can be matched with what was acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    Flush,
    Acked {
        last_seq: u64,
    },
    /// A batch the log appended: `first..=last` (all or nothing).
    Batch {
        first: u64,
        last: u64,
    },
}

pub type Timeline = Arc<Mutex<Vec<Mark>>>;

struct Fs {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    durable: Image,
    cuts: Vec<Cut>,
}

/// The file system; clone the handle from [`LazyFs::recorder`] before mounting.
pub struct LazyFs {
    fs: Arc<Mutex<Fs>>,
    timeline: Timeline,
}

/// Read access to the cuts recorded by a mounted [`LazyFs`].
#[derive(Clone)]
pub struct Recorder {
    fs: Arc<Mutex<Fs>>,
}

impl Recorder {
    /// Every cut recorded so far.
    pub fn cuts(&self) -> Vec<Cut> {
        lock(&self.fs).cuts.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LazyFs {
    pub fn new(timeline: Timeline) -> LazyFs {
        let mut nodes = HashMap::new();
        nodes.insert(
            1,
            Node::Dir {
                entries: BTreeMap::new(),
                perm: 0o755,
            },
        );
        let mut durable = Image::default();
        durable.kinds.insert(1, FileType::Directory);
        durable.dirs.insert(1, BTreeMap::new());
        LazyFs {
            fs: Arc::new(Mutex::new(Fs {
                nodes,
                next_ino: 2,
                durable,
                cuts: Vec::new(),
            })),
            timeline,
        }
    }

    pub fn recorder(&self) -> Recorder {
        Recorder {
            fs: self.fs.clone(),
        }
    }

    /// Mounts at `mountpoint` on a background thread; unmounted when the session drops.
    pub fn mount(self, mountpoint: &Path) -> std::io::Result<fuser::BackgroundSession> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("dcloud-lazyfs".into()),
            fuser::MountOption::RW,
        ];
        fuser::spawn_mount(self, mountpoint, &config)
    }

    fn attr(ino: u64, node: &Node) -> FileAttr {
        let (kind, size, perm, nlink) = match node {
            Node::File { data, perm } => (FileType::RegularFile, data.len, *perm, 1),
            Node::Dir { perm, .. } => (FileType::Directory, 0, *perm, 2),
        };
        let t = SystemTime::UNIX_EPOCH;
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn new_node(&self, parent: INodeNo, name: &OsStr, node: Node) -> Result<FileAttr, Errno> {
        let mut fs = lock(&self.fs);
        let ino = fs.next_ino;
        match fs.nodes.get_mut(&parent.0) {
            Some(Node::Dir { entries, .. }) => {
                if entries.contains_key(name) {
                    return Err(Errno::EEXIST);
                }
                entries.insert(name.to_owned(), ino);
            }
            Some(_) => return Err(Errno::ENOTDIR),
            None => return Err(Errno::ENOENT),
        }
        fs.next_ino += 1;
        let kind = match node {
            Node::File { .. } => FileType::RegularFile,
            Node::Dir { .. } => FileType::Directory,
        };
        fs.durable.kinds.insert(ino, kind);
        let attr = Self::attr(ino, &node);
        fs.nodes.insert(ino, node);
        Ok(attr)
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut fs = lock(&self.fs);
        let Some(Node::Dir { entries, .. }) = fs.nodes.get(&parent.0) else {
            return Err(Errno::ENOENT);
        };
        let ino = *entries.get(name).ok_or(Errno::ENOENT)?;
        match (fs.nodes.get(&ino), dir) {
            (Some(Node::Dir { entries, .. }), true) if !entries.is_empty() => {
                return Err(Errno::ENOTEMPTY)
            }
            (Some(Node::Dir { .. }), false) => return Err(Errno::EISDIR),
            (Some(Node::File { .. }), true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        if let Some(Node::Dir { entries, .. }) = fs.nodes.get_mut(&parent.0) {
            entries.remove(name);
        }
        // The inode stays: a durable entry may still name it.
        Ok(())
    }

    /// Records the durable image after a flush, and first a torn one for a file flush.
    fn flushed(&self, fs: &mut Fs, torn: Option<Image>) {
        let mut t = lock(&self.timeline);
        t.push(Mark::Flush);
        let mark = t.len() - 1;
        drop(t);
        if let Some(image) = torn {
            fs.cuts.push(Cut {
                mark,
                torn: true,
                image,
            });
        }
        let image = fs.durable.clone();
        fs.cuts.push(Cut {
            mark,
            torn: false,
            image,
        });
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let fs = lock(&self.fs);
        let found = match fs.nodes.get(&parent.0) {
            Some(Node::Dir { entries, .. }) => entries.get(name).copied(),
            _ => None,
        };
        match found.and_then(|ino| fs.nodes.get(&ino).map(|n| Self::attr(ino, n))) {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = lock(&self.fs);
        match fs.nodes.get(&ino.0) {
            Some(n) => reply.attr(&TTL, &Self::attr(ino.0, n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut fs = lock(&self.fs);
        let Some(node) = fs.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        match node {
            Node::File { data, perm } => {
                if let Some(size) = size {
                    data.truncate(size);
                }
                if let Some(mode) = mode {
                    *perm = (mode & 0o7777) as u16;
                }
            }
            Node::Dir { perm, .. } => {
                if let Some(mode) = mode {
                    *perm = (mode & 0o7777) as u16;
                }
            }
        }
        reply.attr(&TTL, &Self::attr(ino.0, node));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let node = Node::Dir {
            entries: BTreeMap::new(),
            perm: (mode & 0o7777) as u16,
        };
        match self.new_node(parent, name, node) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let node = Node::File {
            data: Data::default(),
            perm: (mode & 0o7777) as u16,
        };
        match self.new_node(parent, name, node) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut fs = lock(&self.fs);
        let ino = match fs.nodes.get(&parent.0) {
            Some(Node::Dir { entries, .. }) => match entries.get(name) {
                Some(ino) => *ino,
                None => return reply.error(Errno::ENOENT),
            },
            _ => return reply.error(Errno::ENOENT),
        };
        match fs.nodes.get(&newparent.0) {
            Some(Node::Dir { entries, .. }) => {
                if !flags.is_empty() && entries.contains_key(newname) {
                    return reply.error(Errno::EEXIST);
                }
            }
            _ => return reply.error(Errno::ENOENT),
        }
        if let Some(Node::Dir { entries, .. }) = fs.nodes.get_mut(&parent.0) {
            entries.remove(name);
        }
        if let Some(Node::Dir { entries, .. }) = fs.nodes.get_mut(&newparent.0) {
            entries.insert(newname.to_owned(), ino);
        }
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if lock(&self.fs).nodes.contains_key(&ino.0) {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = lock(&self.fs);
        match fs.nodes.get(&ino.0) {
            Some(Node::File { data, .. }) => reply.data(&data.read(offset, size as usize)),
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut fs = lock(&self.fs);
        match fs.nodes.get_mut(&ino.0) {
            Some(Node::File { data, .. }) => {
                data.write(offset, bytes);
                reply.written(bytes.len() as u32);
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a durability point.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut guard = lock(&self.fs);
        let fs = &mut *guard;
        let Some(Node::File { data, .. }) = fs.nodes.get(&ino.0) else {
            return reply.error(Errno::EINVAL);
        };
        let data = data.clone();
        let before = fs.durable.files.get(&ino.0).map_or(0, |d| d.len);
        let torn = (data.len > before + 1).then(|| {
            let mut image = fs.durable.clone();
            let mut half = data.clone();
            half.truncate(before + (data.len - before) / 2);
            image.files.insert(ino.0, half);
            image
        });
        fs.durable.files.insert(ino.0, data);
        self.flushed(fs, torn);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = lock(&self.fs);
        let Some(Node::Dir { entries, .. }) = fs.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut all: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (name, child) in entries {
            let kind = match fs.nodes.get(child) {
                Some(Node::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut guard = lock(&self.fs);
        let fs = &mut *guard;
        let Some(Node::Dir { entries, .. }) = fs.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOTDIR);
        };
        let entries = entries.clone();
        fs.durable.dirs.insert(ino.0, entries);
        self.flushed(fs, None);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
