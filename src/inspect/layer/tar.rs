//! A push parser for tar streams that reads what Go's `archive/tar` reads (dockerd, containerd,
//! BuildKit and podman all unpack layers with it): bytes go in as they arrive, entries and file
//! contents come out through a [`TarSink`].
//!
//! Parity with Go is the contract, field by field: the header checksum (unsigned or signed),
//! the format guess from the magic (V7, USTAR/PAX, STAR, GNU) and the name prefix each format
//! has (including GNU headers whose atime/ctime do not parse, which Go reads as USTAR prefixes),
//! numeric fields in octal (leading and trailing spaces and NULs trimmed, cut at an inner NUL) or
//! base-256, PAX records (`path`, `linkpath`, `size`; an empty value keeps the header's; each `x`
//! replaces the records of an earlier one; `g` records apply to no entry), GNU long names and
//! links (`L`, `K`: the long name wins over a PAX path), and sparse files (old GNU `S` headers
//! with their extension blocks, PAX sparse 0.0, 0.1 and 1.0; `GNU.sparse.name` wins over every
//! other name): a sparse file's content is delivered *expanded*, holes as [`TarSink::hole`].
//! Where Go's reader returns an error the parse stops with [`TarStream::error`] set: Go's
//! clients fail the pull there, so nothing after that point reaches a disk. Where this parser
//! is more lenient than Go (it reads on through some headers Go refuses), it only inspects more.
//!
//! Memory: one 512-byte block, and extension records (long names, PAX records, sparse maps) up
//! to `max_ext` bytes, whatever the archive holds.

const BLOCK: usize = 512;

/// What kind of entry a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Regular file (`0`, or NUL without a trailing slash), and the types whose data is kept as
    /// a file's here although containerd refuses them (`7` contiguous, `S` old GNU sparse).
    File,
    HardLink,
    Symlink,
    Dir,
    /// Devices, FIFOs, PAX global headers (containerd still removes what is at their path) and
    /// unknown types (containerd refuses them).
    Other,
}

/// One entry, after GNU long names and PAX records have been applied.
pub(crate) struct Entry<'a> {
    /// As the archive names it (Go's `Header.Name`), not cleaned.
    pub path: &'a str,
    pub kind: Kind,
    pub mode: u32,
    /// Content bytes that follow, holes of a sparse file included (0 for links, dirs and
    /// devices).
    pub size: u64,
    pub link: Option<&'a str>,
}

/// Receives the parse, in archive order.
pub(crate) trait TarSink {
    /// An entry starts. For a regular file, `data` and `hole` calls follow with exactly `size`
    /// bytes in total, then `end_file`.
    fn entry(&mut self, entry: &Entry<'_>);
    fn data(&mut self, chunk: &[u8]);
    /// `len` zero bytes of a sparse file that the archive does not store.
    fn hole(&mut self, len: u64);
    fn end_file(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    File,
    /// A sparse file's stored fragments.
    Sparse,
    /// The PAX 1.0 sparse map at the start of a sparse file's data.
    SparseMap,
    LongName,
    LongLink,
    Pax,
    Global,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    /// Extension blocks of an old GNU sparse header (not counted in the entry's size).
    SparseExt,
    Data {
        remaining: u64,
        pad: u64,
        target: Target,
    },
    Pad(u64),
    /// The end marker seen: the rest is ignored (as Go's reader never reads it).
    End,
    /// Malformed: the rest is ignored.
    Failed,
}

/// The PAX records that matter to the layout of the next entry (Go keeps them in a map: the
/// last record of a key wins, and an empty value counts as absent).
#[derive(Default)]
struct Pax {
    path: Option<String>,
    linkpath: Option<String>,
    size: Option<Vec<u8>>,
    /// Records Go validates when it merges them (uid, gid, atime, mtime, ctime) whose last
    /// value does not parse: an error there fails the entry.
    bad: [bool; 5],
    sparse_major: Option<Vec<u8>>,
    sparse_minor: Option<Vec<u8>>,
    sparse_name: Option<String>,
    sparse_size: Option<Vec<u8>>,
    sparse_realsize: Option<Vec<u8>>,
    sparse_numblocks: Option<Vec<u8>>,
    sparse_map: Option<Vec<u8>>,
}

/// A regular entry whose header has been read but whose sparse map is still arriving.
struct Pending {
    path: String,
    link: Option<String>,
    kind: Kind,
    mode: u32,
    /// Logical size (Go's `Header.Size` after the sparse records).
    size: u64,
    /// Bytes stored in the archive, padded to a block.
    stored: u64,
    /// Old GNU sparse map entries (offset, length) as read so far.
    map: Vec<(i64, i64)>,
}

/// A sparse file being delivered: its data fragments in logical order.
struct Sparse {
    frags: Vec<(u64, u64)>,
    next: usize,
    pos: u64,
    size: u64,
}

/// The push parser.
pub(crate) struct TarStream {
    state: State,
    block: [u8; BLOCK],
    filled: usize,
    /// One zero block seen (a second ends the archive; anything else after it is an error).
    zero_block: bool,
    /// Archive offset of the next byte.
    offset: u64,
    max_ext: usize,
    max_entry: u64,
    ext: Vec<u8>,
    ext_overflow: bool,
    long_name: Vec<u8>,
    long_link: Vec<u8>,
    pax: Option<Pax>,
    pending: Option<Pending>,
    sparse: Option<Sparse>,
    /// Why parsing stopped early, if it did.
    pub error: Option<String>,
    pub entries: u64,
}

impl TarStream {
    pub fn new(max_ext: usize, max_entry: u64) -> TarStream {
        TarStream {
            state: State::Header,
            block: [0; BLOCK],
            filled: 0,
            zero_block: false,
            offset: 0,
            max_ext,
            max_entry,
            ext: Vec::new(),
            ext_overflow: false,
            long_name: Vec::new(),
            long_link: Vec::new(),
            pax: None,
            pending: None,
            sparse: None,
            error: None,
            entries: 0,
        }
    }

    /// Whether the stream ended where Go's reader ends without an error: at an entry boundary,
    /// inside the padding after an entry's data (Go does not need it), or after the end marker.
    pub fn at_boundary(&self) -> bool {
        match self.state {
            State::End | State::Pad(_) => true,
            State::Header => self.filled == 0,
            _ => false,
        }
    }

    /// Whether more input can change anything.
    pub fn wants_more(&self) -> bool {
        !matches!(self.state, State::End | State::Failed)
    }

    fn fail(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
        }
        self.state = State::Failed;
    }

    pub fn feed(&mut self, mut data: &[u8], sink: &mut impl TarSink) {
        while !data.is_empty() {
            match self.state {
                State::Header | State::SparseExt => {
                    let take = (BLOCK - self.filled).min(data.len());
                    self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
                    self.filled += take;
                    self.offset += take as u64;
                    data = &data[take..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        if self.state == State::Header {
                            self.header(sink);
                        } else {
                            self.sparse_ext(sink);
                        }
                    }
                }
                State::Data {
                    remaining,
                    pad,
                    target,
                } => {
                    let mut n = remaining.min(data.len() as u64) as usize;
                    if target == Target::SparseMap {
                        // The map is read a whole block at a time, as Go reads it.
                        n = n.min(BLOCK - self.ext.len() % BLOCK);
                    }
                    let (now, rest) = data.split_at(n);
                    data = rest;
                    self.offset += n as u64;
                    let remaining = remaining - n as u64;
                    self.state = State::Data {
                        remaining,
                        pad,
                        target,
                    };
                    match target {
                        Target::File => sink.data(now),
                        Target::Sparse => self.sparse_data(now, sink),
                        Target::Skip => {}
                        _ => {
                            let room = self.max_ext.saturating_sub(self.ext.len());
                            self.ext_overflow |= now.len() > room;
                            self.ext.extend_from_slice(&now[..now.len().min(room)]);
                            if target == Target::SparseMap && self.ext.len() % BLOCK == 0 {
                                self.sparse_map_block(remaining, pad, sink);
                                continue;
                            }
                        }
                    }
                    if remaining == 0 && matches!(self.state, State::Data { .. }) {
                        self.state = State::Pad(pad);
                        self.end_data(target, sink);
                    }
                }
                State::Pad(pad) => {
                    let n = pad.min(data.len() as u64) as usize;
                    data = &data[n..];
                    self.offset += n as u64;
                    self.state = if pad == n as u64 {
                        State::Header
                    } else {
                        State::Pad(pad - n as u64)
                    };
                }
                State::End | State::Failed => {
                    self.offset += data.len() as u64;
                    return;
                }
            }
        }
        // A zero-length file's padding is zero too: settle `Pad(0)` so boundaries are exact.
        if self.state == State::Pad(0) {
            self.state = State::Header;
        }
    }

    fn end_data(&mut self, target: Target, sink: &mut impl TarSink) {
        match target {
            Target::File => sink.end_file(),
            Target::Sparse => self.end_sparse(sink),
            Target::Skip => {}
            _ if self.ext_overflow => {
                let at = self.offset;
                self.fail(format!(
                    "tar extension record over {} bytes at offset {at}",
                    self.max_ext
                ));
            }
            // Go cuts a long name at its first NUL; an empty one leaves the header's name.
            Target::LongName => self.long_name = parse_string(&self.ext).to_vec(),
            Target::LongLink => self.long_link = parse_string(&self.ext).to_vec(),
            Target::Pax | Target::Global => match parse_pax(&self.ext) {
                Some(pax) => {
                    if target == Target::Pax {
                        self.pax = Some(pax);
                    }
                }
                None => {
                    let at = self.offset;
                    self.fail(format!("malformed PAX records before offset {at}"));
                }
            },
            // Ran out of data before the map was whole: Go reads past the entry and fails.
            Target::SparseMap => {
                let at = self.offset;
                self.fail(format!("sparse map longer than its entry at offset {at}"));
            }
        }
        self.ext.clear();
        self.ext_overflow = false;
    }

    fn header(&mut self, sink: &mut impl TarSink) {
        let at = self.offset - BLOCK as u64;
        if self.block.iter().all(|&b| b == 0) {
            if self.zero_block {
                self.state = State::End;
            }
            self.zero_block = true;
            return;
        }
        if self.zero_block {
            return self.fail(format!("a zero block then a header at offset {at}"));
        }
        let h = match read_header(&self.block) {
            Ok(h) => h,
            Err(why) => return self.fail(format!("bad tar header at offset {at}: {why}")),
        };
        match h.typeflag {
            b'x' | b'g' | b'L' | b'K' => {
                if h.size < 0 {
                    return self.fail(format!("negative tar size at offset {at}"));
                }
                let target = match h.typeflag {
                    b'x' => Target::Pax,
                    b'g' => Target::Global,
                    b'L' => Target::LongName,
                    _ => Target::LongLink,
                };
                if target == Target::Global {
                    // Go hands a global header to its caller as an entry of its own: the
                    // records pending for the next entry are dropped, and containerd removes
                    // whatever sits at its name.
                    self.pax = None;
                    self.long_name.clear();
                    self.long_link.clear();
                    let path = String::from_utf8_lossy(&h.name).into_owned();
                    sink.entry(&Entry {
                        path: &path,
                        kind: Kind::Other,
                        mode: 0,
                        size: 0,
                        link: None,
                    });
                }
                self.ext.clear();
                self.ext_overflow = false;
                self.start_data(h.size as u64, target, sink);
            }
            _ => self.regular(h, at, sink),
        }
    }

    /// A header that is not an extension: merge what came before it, and start its data.
    fn regular(&mut self, mut h: RawHeader, at: u64, sink: &mut impl TarSink) {
        self.entries += 1;
        let mut pax = self.pax.take().unwrap_or_default();
        let long_name = std::mem::take(&mut self.long_name);
        let long_link = std::mem::take(&mut self.long_link);
        let bad = |s: &mut TarStream, what: &str| s.fail(format!("{what} at offset {at}"));
        if pax.bad.contains(&true) {
            return bad(self, "invalid PAX record");
        }
        let version = sparse_version(&pax);
        let mut name = match pax.path.take() {
            Some(p) => p,
            None => String::from_utf8_lossy(&h.name).into_owned(),
        };
        let mut link = match pax.linkpath.take() {
            Some(l) => l,
            None => String::from_utf8_lossy(&h.linkname).into_owned(),
        };
        if let Some(s) = &pax.size {
            match go_parse_int(s) {
                Some(n) => h.size = n,
                None => return bad(self, "invalid PAX size"),
            }
        }
        if !long_name.is_empty() {
            name = String::from_utf8_lossy(&long_name).into_owned();
        }
        if !long_link.is_empty() {
            link = String::from_utf8_lossy(&long_link).into_owned();
        }
        if h.typeflag == 0 {
            h.typeflag = if name.ends_with('/') { b'5' } else { b'0' };
        }
        let header_only = matches!(h.typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        let stored = if header_only { 0 } else { h.size };
        if stored < 0 {
            return bad(self, "negative tar size");
        }
        let stored = stored as u64;
        if stored > self.max_entry {
            return self.fail(format!(
                "tar entry at offset {at} declares {stored} bytes, over the {} limit",
                self.max_entry
            ));
        }
        let kind = match h.typeflag {
            b'0' | b'7' | b'S' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'5' => Kind::Dir,
            _ => Kind::Other,
        };
        let mut pending = Pending {
            path: name,
            link: (kind == Kind::HardLink || kind == Kind::Symlink).then_some(link),
            kind,
            mode: u32::try_from(h.mode & 0o7777_7777).unwrap_or(0),
            size: stored,
            stored,
            map: Vec::new(),
        };

        // Sparse files: old GNU headers, then the PAX formats.
        if h.typeflag == b'S' {
            if h.format != Format::Gnu {
                return bad(self, "old GNU sparse header in another format");
            }
            let Ok(real) = parse_numeric(&self.block[483..495]) else {
                return bad(self, "bad sparse size");
            };
            pending.size = real.max(0) as u64;
            if real < 0 {
                return bad(self, "negative sparse size");
            }
            if !read_old_sparse(&self.block[386..386 + 4 * 24], &mut pending.map) {
                return bad(self, "bad sparse map");
            }
            let extended = self.block[386 + 4 * 24] != 0;
            self.pending = Some(pending);
            if extended {
                self.state = State::SparseExt;
            } else {
                self.start_sparse(sink);
            }
            return;
        }
        let Some(is_1_0) = version else {
            return self.start_entry(pending, sink);
        };
        if header_only {
            return bad(self, "sparse records on a header-only entry");
        }
        if let Some(n) = pax.sparse_name.filter(|n| !n.is_empty()) {
            pending.path = n;
        }
        if let Some(s) = pax
            .sparse_size
            .filter(|s| !s.is_empty())
            .or(pax.sparse_realsize.filter(|s| !s.is_empty()))
        {
            match go_parse_int(&s) {
                Some(n) if n >= 0 => pending.size = n as u64,
                _ => return bad(self, "bad sparse size"),
            }
        }
        if is_1_0 {
            // The map is at the start of the stored data, in whole blocks.
            self.pending = Some(pending);
            self.ext.clear();
            self.ext_overflow = false;
            let pad = pad_of(stored);
            if stored < BLOCK as u64 {
                return self.fail(format!("sparse map longer than its entry at offset {at}"));
            }
            self.state = State::Data {
                remaining: stored,
                pad,
                target: Target::SparseMap,
            };
            return;
        }
        let Some(map) = sparse_map_0_1(pax.sparse_numblocks.as_deref(), pax.sparse_map.as_deref())
        else {
            return bad(self, "bad sparse map");
        };
        pending.map = map;
        self.pending = Some(pending);
        self.start_sparse(sink);
    }

    /// An extension block of an old GNU sparse header.
    fn sparse_ext(&mut self, sink: &mut impl TarSink) {
        let Some(p) = self.pending.as_mut() else {
            return self.fail("sparse extension without a header".into());
        };
        let ok = read_old_sparse(&self.block[..21 * 24], &mut p.map);
        if !ok || p.map.len() * 24 > self.max_ext.max(BLOCK) {
            let at = self.offset;
            return self.fail(format!("bad or oversized sparse map before offset {at}"));
        }
        if self.block[21 * 24] != 0 {
            return; // another extension block follows
        }
        self.state = State::Header;
        self.start_sparse(sink);
    }

    /// A whole block of a PAX 1.0 sparse map has arrived: is the map complete?
    fn sparse_map_block(&mut self, remaining: u64, pad: u64, sink: &mut impl TarSink) {
        let at = self.offset;
        if self.ext_overflow {
            return self.fail(format!(
                "sparse map over {} bytes before offset {at}",
                self.max_ext
            ));
        }
        match sparse_map_1_0(&self.ext) {
            Err(()) => self.fail(format!("bad sparse map before offset {at}")),
            Ok(None) => {
                // More blocks are needed: Go reads them whole from the entry's data.
                if remaining < BLOCK as u64 {
                    self.fail(format!("sparse map longer than its entry at offset {at}"));
                }
            }
            Ok(Some(map)) => {
                self.ext.clear();
                let Some(mut p) = self.pending.take() else {
                    return self.fail("sparse map without an entry".into());
                };
                p.map = map;
                p.stored = remaining;
                self.pending = Some(p);
                self.state = State::Header;
                self.start_sparse_with(remaining, pad, sink);
            }
        }
    }

    fn start_sparse(&mut self, sink: &mut impl TarSink) {
        let stored = self.pending.as_ref().map_or(0, |p| p.stored);
        self.start_sparse_with(stored, pad_of(stored), sink);
    }

    /// The sparse map is known: check it as Go does, announce the entry, deliver its data.
    fn start_sparse_with(&mut self, stored: u64, pad: u64, sink: &mut impl TarSink) {
        let Some(p) = self.pending.take() else {
            return self.fail("sparse entry lost".into());
        };
        let Some(frags) = sparse_fragments(&p.map, p.size) else {
            let at = self.offset;
            return self.fail(format!("invalid sparse map before offset {at}"));
        };
        let target = if p.kind == Kind::File {
            self.sparse = Some(Sparse {
                frags,
                next: 0,
                pos: 0,
                size: p.size,
            });
            Target::Sparse
        } else {
            Target::Skip
        };
        self.announce(&p, sink);
        self.state = State::Data {
            remaining: stored,
            pad,
            target,
        };
        self.settle_empty(sink);
    }

    fn start_entry(&mut self, p: Pending, sink: &mut impl TarSink) {
        self.announce(&p, sink);
        let target = if p.kind == Kind::File {
            Target::File
        } else {
            Target::Skip
        };
        self.start_data(p.stored, target, sink);
    }

    fn announce(&mut self, p: &Pending, sink: &mut impl TarSink) {
        sink.entry(&Entry {
            path: &p.path,
            kind: p.kind,
            mode: p.mode,
            size: if p.kind == Kind::File { p.size } else { 0 },
            link: p.link.as_deref(),
        });
    }

    fn start_data(&mut self, size: u64, target: Target, sink: &mut impl TarSink) {
        self.state = State::Data {
            remaining: size,
            pad: pad_of(size),
            target,
        };
        self.settle_empty(sink);
    }

    /// Stored bytes of a sparse file: holes before each fragment, then the fragment.
    fn sparse_data(&mut self, mut chunk: &[u8], sink: &mut impl TarSink) {
        let Some(sp) = self.sparse.as_mut() else {
            return;
        };
        while !chunk.is_empty() {
            let Some(&(off, len)) = sp.frags.get(sp.next) else {
                let at = self.offset;
                return self.fail(format!(
                    "sparse file stores more data than its map holds, before offset {at}"
                ));
            };
            if sp.pos < off {
                sink.hole(off - sp.pos);
                sp.pos = off;
            }
            let n = ((off + len - sp.pos) as usize).min(chunk.len());
            sink.data(&chunk[..n]);
            sp.pos += n as u64;
            chunk = &chunk[n..];
            if sp.pos == off + len {
                sp.next += 1;
            }
        }
    }

    fn end_sparse(&mut self, sink: &mut impl TarSink) {
        let Some(sp) = self.sparse.take() else {
            return sink.end_file();
        };
        if sp.next < sp.frags.len() {
            let at = self.offset;
            sink.end_file();
            return self.fail(format!(
                "sparse file stores less data than its map holds, at offset {at}"
            ));
        }
        if sp.pos < sp.size {
            sink.hole(sp.size - sp.pos);
        }
        sink.end_file();
    }

    /// An entry with no data ends at once.
    fn settle_empty(&mut self, sink: &mut impl TarSink) {
        if let State::Data {
            remaining: 0,
            pad,
            target,
        } = self.state
        {
            self.state = if pad == 0 {
                State::Header
            } else {
                State::Pad(pad)
            };
            self.end_data(target, sink);
        }
    }
}

fn pad_of(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The header formats Go tells apart by their magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    V7,
    /// `ustar\0`: USTAR or PAX.
    Ustar,
    /// `ustar\0` with the `tar\0` trailer.
    Star,
    /// `ustar ` and ` \0`.
    Gnu,
}

/// A header block as Go's `readHeader` decodes it.
struct RawHeader {
    typeflag: u8,
    name: Vec<u8>,
    linkname: Vec<u8>,
    size: i64,
    mode: i64,
    format: Format,
}

/// Whether `block` is a header Go's reader accepts (the checksum holds and every numeric field
/// parses): the test that tells a plain tar layer from other bytes.
pub(crate) fn is_header(block: &[u8]) -> bool {
    let Some(block) = block.first_chunk::<BLOCK>() else {
        return false;
    };
    read_header(block).is_ok()
}

fn format_of(b: &[u8; BLOCK]) -> Option<Format> {
    let stored = parse_octal(&b[148..156]).ok()?;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    if stored != unsigned && stored != signed {
        return None;
    }
    let (magic, version, trailer) = (&b[257..263], &b[263..265], &b[508..512]);
    Some(if magic == b"ustar\0" && trailer == b"tar\0" {
        Format::Star
    } else if magic == b"ustar\0" {
        Format::Ustar
    } else if magic == b"ustar " && version == b" \0" {
        Format::Gnu
    } else {
        Format::V7
    })
}

fn read_header(b: &[u8; BLOCK]) -> Result<RawHeader, &'static str> {
    let format = format_of(b).ok_or("checksum mismatch")?;
    let num = |r: std::ops::Range<usize>| parse_numeric(&b[r]).map_err(|()| "bad numeric field");
    let mut name = parse_string(&b[0..100]).to_vec();
    let linkname = parse_string(&b[157..257]).to_vec();
    let size = num(124..136)?;
    let mode = num(100..108)?;
    num(108..116)?; // uid
    num(116..124)?; // gid
    num(136..148)?; // mtime
    if format != Format::V7 {
        num(329..337)?; // devmajor
        num(337..345)?; // devminor
        let prefix: &[u8] = match format {
            Format::Ustar => parse_string(&b[345..500]),
            Format::Star => {
                num(476..488)?; // atime
                num(488..500)?; // ctime
                parse_string(&b[345..476])
            }
            Format::Gnu => {
                // Go reads atime/ctime only when set; when they do not parse, the block was
                // written by an old Go that put a USTAR prefix there, and Go uses it as one.
                let bad =
                    |r: std::ops::Range<usize>| b[r.start] != 0 && parse_numeric(&b[r]).is_err();
                let p = parse_string(&b[345..500]);
                if (bad(345..357) || bad(357..369)) && p.is_ascii() {
                    p
                } else {
                    &[]
                }
            }
            Format::V7 => &[],
        };
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    Ok(RawHeader {
        typeflag: b[156],
        name,
        linkname,
        size,
        mode,
        format,
    })
}

/// Entries of an old GNU sparse array (24 bytes each: offset, length); stops at the first
/// entry whose offset starts with NUL. `false` when a number does not parse.
fn read_old_sparse(array: &[u8], map: &mut Vec<(i64, i64)>) -> bool {
    for e in array.chunks_exact(24) {
        if e[0] == 0 {
            break;
        }
        match (parse_numeric(&e[..12]), parse_numeric(&e[12..24])) {
            (Ok(o), Ok(l)) => map.push((o, l)),
            _ => return false,
        }
    }
    true
}

/// Which PAX sparse format the records announce: `Some(true)` for 1.0 (map in the data),
/// `Some(false)` for 0.0/0.1 (map in the records), `None` when the file is not sparse.
fn sparse_version(pax: &Pax) -> Option<bool> {
    let get = |v: &Option<Vec<u8>>| v.clone().unwrap_or_default();
    let (major, minor) = (get(&pax.sparse_major), get(&pax.sparse_minor));
    match (major.as_slice(), minor.as_slice()) {
        (b"0", b"0" | b"1") => Some(false),
        (b"1", b"0") => Some(true),
        _ if !major.is_empty() || !minor.is_empty() => None,
        _ if !get(&pax.sparse_map).is_empty() => Some(false),
        _ => None,
    }
}

fn sparse_map_0_1(numblocks: Option<&[u8]>, map: Option<&[u8]>) -> Option<Vec<(i64, i64)>> {
    let n = go_parse_int(numblocks.unwrap_or_default())?;
    if n < 0 {
        return None;
    }
    let map = map.unwrap_or_default();
    let fields: Vec<&[u8]> = if map.is_empty() {
        Vec::new()
    } else {
        map.split(|&c| c == b',').collect()
    };
    if fields.len() as u64 != 2 * n as u64 {
        return None;
    }
    fields
        .chunks_exact(2)
        .map(|p| Some((go_parse_int(p[0])?, go_parse_int(p[1])?)))
        .collect()
}

/// A PAX 1.0 sparse map read so far (whole blocks): `Ok(None)` while more lines are needed.
fn sparse_map_1_0(text: &[u8]) -> Result<Option<Vec<(i64, i64)>>, ()> {
    let lines = text.iter().filter(|&&c| c == b'\n').count() as u64;
    let mut tokens = text.split(|&c| c == b'\n');
    if lines < 1 {
        return Ok(None);
    }
    let n = go_parse_int(tokens.next().unwrap_or_default()).ok_or(())?;
    if !(0..=i64::MAX / 2).contains(&n) {
        return Err(());
    }
    if lines < 1 + 2 * n as u64 {
        return Ok(None);
    }
    let mut map = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let o = go_parse_int(tokens.next().unwrap_or_default()).ok_or(())?;
        let l = go_parse_int(tokens.next().unwrap_or_default()).ok_or(())?;
        map.push((o, l));
    }
    Ok(Some(map))
}

/// Go's `validateSparseEntries` then `invertSparseEntries`, kept as the data fragments: in
/// order, not overlapping, within `size`; empty fragments dropped.
fn sparse_fragments(map: &[(i64, i64)], size: u64) -> Option<Vec<(u64, u64)>> {
    let size = i64::try_from(size).ok()?;
    let mut end = 0i64;
    let mut out = Vec::with_capacity(map.len());
    for &(o, l) in map {
        if o < 0 || l < 0 || o > i64::MAX - l || o + l > size || end > o {
            return None;
        }
        end = o + l;
        if l > 0 {
            out.push((o as u64, l as u64));
        }
    }
    Some(out)
}

/// Go's `parsePAX` on an `x` or `g` record block; `None` where Go returns an error.
fn parse_pax(mut buf: &[u8]) -> Option<Pax> {
    let mut pax = Pax::default();
    let mut sparse_pairs: Vec<Vec<u8>> = Vec::new();
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    // An empty value keeps the header's field (Go's mergePAX skips it).
    let set = |v: &[u8]| (!v.is_empty()).then(|| v.to_vec());
    while !buf.is_empty() {
        let space = buf.iter().position(|&c| c == b' ')?;
        let n = go_parse_int(&buf[..space])?;
        if n < 5 || n > buf.len() as i64 {
            return None;
        }
        let n = n as usize;
        if n <= space + 1 {
            return None;
        }
        let rec = &buf[space + 1..n - 1];
        if buf[n - 1] != b'\n' {
            return None;
        }
        buf = &buf[n..];
        let eq = rec.iter().position(|&c| c == b'=')?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        if k.is_empty() {
            return None;
        }
        match k {
            b"path" | b"linkpath" | b"uname" | b"gname" if v.contains(&0) => return None,
            _ if k.contains(&0) => return None,
            _ => {}
        }
        match k {
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                let want_offset = sparse_pairs.len() % 2 == 0;
                if want_offset != (k == b"GNU.sparse.offset") || v.contains(&b',') {
                    return None;
                }
                sparse_pairs.push(v.to_vec());
            }
            b"path" => pax.path = set(v).map(|v| text(&v)),
            b"linkpath" => pax.linkpath = set(v).map(|v| text(&v)),
            b"size" => pax.size = set(v),
            // The last record of a key wins, as in Go's map; checked when merged.
            b"uid" => pax.bad[0] = !v.is_empty() && go_parse_int(v).is_none(),
            b"gid" => pax.bad[1] = !v.is_empty() && go_parse_int(v).is_none(),
            b"atime" => pax.bad[2] = !v.is_empty() && !pax_time_ok(v),
            b"mtime" => pax.bad[3] = !v.is_empty() && !pax_time_ok(v),
            b"ctime" => pax.bad[4] = !v.is_empty() && !pax_time_ok(v),
            b"GNU.sparse.major" => pax.sparse_major = Some(v.to_vec()),
            b"GNU.sparse.minor" => pax.sparse_minor = Some(v.to_vec()),
            b"GNU.sparse.name" => pax.sparse_name = Some(text(v)),
            b"GNU.sparse.size" => pax.sparse_size = Some(v.to_vec()),
            b"GNU.sparse.realsize" => pax.sparse_realsize = Some(v.to_vec()),
            b"GNU.sparse.numblocks" => pax.sparse_numblocks = Some(v.to_vec()),
            b"GNU.sparse.map" => pax.sparse_map = Some(v.to_vec()),
            _ => {}
        }
    }
    if !sparse_pairs.is_empty() {
        pax.sparse_map = Some(sparse_pairs.join(&b','));
    }
    Some(pax)
}

/// Go's `parsePAXTime`: seconds, optionally `.` and digits.
fn pax_time_ok(v: &[u8]) -> bool {
    let (secs, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    go_parse_int(secs).is_some() && frac.iter().all(u8::is_ascii_digit)
}

/// Go's `parser.parseString`: up to the first NUL.
fn parse_string(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Go's `parser.parseNumeric`: base-256 (two's complement, first bit set) or octal.
fn parse_numeric(b: &[u8]) -> Result<i64, ()> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        let inv = if b[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return Err(());
            }
            x = x << 8 | u64::from(c);
        }
        if x >> 63 > 0 {
            return Err(());
        }
        return Ok(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    parse_octal(b)
}

/// Go's `parser.parseOctal`: spaces and NULs trimmed at both ends, then cut at a NUL.
fn parse_octal(b: &[u8]) -> Result<i64, ()> {
    let pad = |c: &u8| *c == b' ' || *c == 0;
    let start = b.iter().position(|c| !pad(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !pad(c)).map_or(start, |i| i + 1);
    let b = &b[start..end];
    if b.is_empty() {
        return Ok(0);
    }
    let digits = parse_string(b);
    if digits.is_empty() {
        return Err(());
    }
    let mut x: u64 = 0;
    for &c in digits {
        if !(b'0'..=b'7').contains(&c) {
            return Err(());
        }
        x = x.checked_mul(8).ok_or(())? | u64::from(c - b'0');
    }
    Ok(x as i64)
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then decimal digits, in range.
fn go_parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut x: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if x > 1 << 63 {
            return None;
        }
        Some((x as i64).wrapping_neg())
    } else {
        i64::try_from(x).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_as_go_parses_them() {
        assert_eq!(parse_octal(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_octal(b"\0\0\0\x000012 "), Ok(0o12));
        assert_eq!(parse_octal(b"  12\x0034 "), Ok(0o12));
        assert_eq!(parse_octal(b"12 34"), Err(()));
        assert_eq!(parse_octal(b"\0\0\0"), Ok(0));
        assert_eq!(parse_octal(b"+12"), Err(()));
        assert_eq!(parse_octal(b"18"), Err(()));
        // Base-256: 9 GiB, a negative number, an overflow.
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[4..].copy_from_slice(&(9u64 << 30).to_be_bytes());
        assert_eq!(parse_numeric(&f), Ok(9 << 30));
        assert_eq!(parse_numeric(&[0xff; 12]), Ok(-1));
        let mut over = [0u8; 12];
        over[0] = 0x80;
        over[3] = 1;
        assert_eq!(parse_numeric(&over), Err(()));
        assert_eq!(go_parse_int(b"+5"), Some(5));
        assert_eq!(go_parse_int(b"-5"), Some(-5));
        assert_eq!(go_parse_int(b" 5"), None);
        assert_eq!(go_parse_int(b""), None);
        assert_eq!(go_parse_int(b"9223372036854775808"), None);
        assert_eq!(go_parse_int(b"-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn pax_records_parse_as_go_parses_them() {
        let p = parse_pax(b"16 path=a/b/cde\n8 size=\n").unwrap();
        assert_eq!(p.path.as_deref(), Some("a/b/cde"));
        assert!(p.size.is_none(), "an empty value keeps the header's");
        assert!(parse_pax(b"16 path=a/b/cde\n\0\0").is_none());
        assert!(parse_pax(b"15 path=a\0b/cde\n").is_none());
        assert!(parse_pax(b"10 =value\n").is_none());
        let p = parse_pax(
            b"23 GNU.sparse.offset=0\n26 GNU.sparse.numbytes=10\n23 GNU.sparse.offset=9\n",
        )
        .unwrap();
        assert_eq!(p.sparse_map.as_deref(), Some(&b"0,10,9"[..]));
        assert!(parse_pax(b"26 GNU.sparse.numbytes=10\n").is_none());
        // The last record of a key wins, as in Go's map.
        assert!(parse_pax(b"8 uid=x\n8 uid=5\n").unwrap().bad == [false; 5]);
        assert!(parse_pax(b"8 uid=5\n8 uid=x\n").unwrap().bad[0]);
    }

    #[test]
    fn sparse_maps_are_checked_as_go_checks_them() {
        assert_eq!(
            sparse_fragments(&[(0, 0), (10, 5), (20, 0)], 30),
            Some(vec![(10, 5)])
        );
        assert_eq!(sparse_fragments(&[(10, 5), (12, 1)], 30), None);
        assert_eq!(sparse_fragments(&[(10, 25)], 30), None);
        assert_eq!(sparse_fragments(&[(-1, 2)], 30), None);
        assert_eq!(
            sparse_map_1_0(b"2\n0\n5\n10\n5\n").unwrap(),
            Some(vec![(0, 5), (10, 5)])
        );
        assert_eq!(sparse_map_1_0(b"2\n0\n5\n10\n").unwrap(), None);
        assert!(sparse_map_1_0(b"x\n").is_err());
    }
}
