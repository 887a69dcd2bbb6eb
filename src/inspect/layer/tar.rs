//! A push parser for tar streams: bytes go in as they arrive, entries and file contents come out
//! through a [`TarSink`]. Headers are parsed with [`tar::Header`]; GNU long names (`L`, `K`) and
//! PAX records (`x`, `g`) are read into buffers bounded by `max_ext`. Memory: one 512-byte block
//! plus those buffers, whatever the archive holds.

use tar::{EntryType, Header};

const BLOCK: usize = 512;

/// What kind of entry a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    HardLink,
    Symlink,
    Dir,
    Other,
}

/// One entry, after GNU long names and PAX records have been applied.
pub(crate) struct Entry<'a> {
    pub path: &'a str,
    pub kind: Kind,
    pub mode: u32,
    /// Content bytes that follow (0 for links, dirs and devices).
    pub size: u64,
    pub link: Option<&'a str>,
}

/// Receives the parse, in archive order.
pub(crate) trait TarSink {
    /// An entry starts. For a regular file, `data` calls follow with exactly `size` bytes in
    /// total, then `end_file`.
    fn entry(&mut self, entry: &Entry<'_>);
    fn data(&mut self, chunk: &[u8]);
    fn end_file(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    File,
    LongName,
    LongLink,
    Pax,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Data {
        remaining: u64,
        pad: u64,
        target: Target,
    },
    Pad(u64),
    /// Two zero blocks seen: the rest is ignored.
    End,
    /// Malformed: the rest is ignored.
    Failed,
}

/// The push parser.
pub(crate) struct TarStream {
    state: State,
    block: [u8; BLOCK],
    filled: usize,
    zero_blocks: u8,
    /// Archive offset of the next byte.
    offset: u64,
    max_ext: usize,
    max_entry: u64,
    ext: Vec<u8>,
    ext_overflow: bool,
    long_name: Option<String>,
    long_link: Option<String>,
    pax_path: Option<String>,
    pax_link: Option<String>,
    pax_size: Option<u64>,
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
            zero_blocks: 0,
            offset: 0,
            max_ext,
            max_entry,
            ext: Vec::new(),
            ext_overflow: false,
            long_name: None,
            long_link: None,
            pax_path: None,
            pax_link: None,
            pax_size: None,
            error: None,
            entries: 0,
        }
    }

    /// Whether the stream ended cleanly so far: at an entry boundary or after the end marker.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::End) || (self.state == State::Header && self.filled == 0)
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
                State::Header => {
                    let take = (BLOCK - self.filled).min(data.len());
                    self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
                    self.filled += take;
                    self.offset += take as u64;
                    data = &data[take..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.header(sink);
                    }
                }
                State::Data {
                    remaining,
                    pad,
                    target,
                } => {
                    let n = remaining.min(data.len() as u64) as usize;
                    let (now, rest) = data.split_at(n);
                    data = rest;
                    self.offset += n as u64;
                    match target {
                        Target::File => sink.data(now),
                        Target::Skip => {}
                        _ => {
                            let room = self.max_ext.saturating_sub(self.ext.len());
                            self.ext_overflow |= now.len() > room;
                            self.ext.extend_from_slice(&now[..now.len().min(room)]);
                        }
                    }
                    let remaining = remaining - n as u64;
                    if remaining == 0 {
                        self.state = State::Pad(pad);
                        self.end_data(target, sink);
                    } else {
                        self.state = State::Data {
                            remaining,
                            pad,
                            target,
                        };
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
        let text = || String::from_utf8_lossy(trim_nul(&self.ext)).into_owned();
        match target {
            Target::File => sink.end_file(),
            Target::Skip => {}
            _ if self.ext_overflow => {
                let at = self.offset;
                self.fail(format!(
                    "tar extension record over {} bytes at offset {at}",
                    self.max_ext
                ));
            }
            Target::LongName => self.long_name = Some(text()),
            Target::LongLink => self.long_link = Some(text()),
            Target::Pax => self.pax_records(),
        }
        self.ext.clear();
        self.ext_overflow = false;
    }

    fn pax_records(&mut self) {
        for ext in tar::PaxExtensions::new(&self.ext).flatten() {
            let value = || String::from_utf8_lossy(ext.value_bytes()).into_owned();
            match ext.key_bytes() {
                b"path" => self.pax_path = Some(value()),
                b"linkpath" => self.pax_link = Some(value()),
                b"size" => self.pax_size = ext.value().ok().and_then(|v| v.trim().parse().ok()),
                _ => {}
            }
        }
    }

    fn header(&mut self, sink: &mut impl TarSink) {
        let at = self.offset - BLOCK as u64;
        if self.block.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks >= 2 {
                self.state = State::End;
            }
            return;
        }
        self.zero_blocks = 0;
        let header = Header::from_byte_slice(&self.block);
        if !checksum_ok(&self.block, header) {
            return self.fail(format!("bad tar header checksum at offset {at}"));
        }
        let entry_type = header.entry_type();
        let size = match self.pax_size.take() {
            Some(s) => s,
            None => match header.entry_size() {
                Ok(s) => s,
                Err(_) => return self.fail(format!("bad tar size field at offset {at}")),
            },
        };
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let ext_target = match entry_type {
            EntryType::GNULongName => Some(Target::LongName),
            EntryType::GNULongLink => Some(Target::LongLink),
            EntryType::XHeader => Some(Target::Pax),
            // Global PAX records: read (bounded) and ignored; their keys apply to no one entry.
            EntryType::XGlobalHeader => Some(Target::Skip),
            _ => None,
        };
        if let Some(target) = ext_target {
            self.ext.clear();
            self.state = State::Data {
                remaining: size,
                pad,
                target,
            };
            return self.settle_empty(sink);
        }
        self.entries += 1;
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
            EntryType::Link => Kind::HardLink,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Directory => Kind::Dir,
            _ => Kind::Other,
        };
        // Header-only entries carry no data whatever their size field says (as Go's archive/tar).
        let header_only = matches!(
            entry_type,
            EntryType::Link
                | EntryType::Symlink
                | EntryType::Char
                | EntryType::Block
                | EntryType::Directory
                | EntryType::Fifo
        );
        let size = if header_only { 0 } else { size };
        if size > self.max_entry {
            return self.fail(format!(
                "tar entry at offset {at} declares {size} bytes, over the {} limit",
                self.max_entry
            ));
        }
        let path = self
            .long_name
            .take()
            .or(self.pax_path.take())
            .unwrap_or_else(|| String::from_utf8_lossy(&header.path_bytes()).into_owned());
        let link = self.long_link.take().or(self.pax_link.take()).or_else(|| {
            header
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
        });
        sink.entry(&Entry {
            path: &path,
            kind,
            mode: header.mode().unwrap_or(0),
            size: if kind == Kind::File { size } else { 0 },
            link: link.as_deref(),
        });
        let target = if kind == Kind::File {
            Target::File
        } else {
            Target::Skip
        };
        self.state = State::Data {
            remaining: size,
            pad,
            target,
        };
        self.settle_empty(sink);
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

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// The header checksum: the byte sum with the checksum field read as spaces (unsigned, or signed
/// as some old tars wrote it).
fn checksum_ok(block: &[u8; BLOCK], header: &Header) -> bool {
    let Ok(stored) = header.cksum() else {
        return false;
    };
    let field = &block[148..156];
    let spaces = 8 * 32;
    let unsigned = block.iter().map(|&b| u32::from(b)).sum::<u32>()
        - field.iter().map(|&b| u32::from(b)).sum::<u32>()
        + spaces;
    let signed = block.iter().map(|&b| i32::from(b as i8)).sum::<i32>()
        - field.iter().map(|&b| i32::from(b as i8)).sum::<i32>()
        + spaces as i32;
    stored == unsigned || stored as i32 == signed
}
