"""Kubo-compatible content addressing of a byte stream (UnixFS, CIDv1, raw leaves).

What ``ipfs add --cid-version=1 --raw-leaves --chunker=size-262144`` (balanced layout,
the default) computes, without a daemon:

* The stream is cut into 256 KiB blocks. Each block is a *raw leaf*:
  ``CIDv1(codec raw 0x55, sha2-256(block))``.
* A stream of one block (including the empty stream, which is one empty block) is
  addressed by that leaf's CID.
* Otherwise leaves are grouped, left to right, 174 per node, into dag-pb nodes; those
  nodes again 174 per node, and so on until one node remains: the root. Every leaf sits
  at the same depth (Kubo's and js-ipfs's "balanced" layout).
* A node is a dag-pb ``PBNode``: its ``Links`` (field 2) in order, each
  ``PBLink{Hash: child CID, Name: "", Tsize: child's cumulative size}``, then ``Data``
  (field 1): a UnixFS ``Data{Type: File, filesize, blocksizes[]}`` protobuf. Its CID is
  ``CIDv1(codec dag-pb 0x70, sha2-256(node))``.

Text form is multibase base32 lowercase (``b`` prefix). `UnixfsFileBuilder` takes the
blocks one at a time and keeps only the pending links of each tree level (at most 174
per level), so memory does not grow with the file. `decode_file_node` parses the nodes a
peer sends back, strictly and with size limits.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from app.core.errors import LocalProtocolError, RemoteProtocolError

BLOCK_SIZE = 256 * 1024
MAX_LINKS_PER_NODE = 174
CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
MULTIHASH_SHA2_256 = 0x12
UNIXFS_TYPE_FILE = 2
# A full node is ~174 * 45 bytes of links + ~174 * 4 bytes of blocksizes; allow slack.
MAX_NODE_SIZE = 64 * 1024
_CID_PREFIX_RAW = bytes([0x01, CODEC_RAW, MULTIHASH_SHA2_256, 32])
_CID_PREFIX_DAG_PB = bytes([0x01, CODEC_DAG_PB, MULTIHASH_SHA2_256, 32])
CID_SIZE = 36
# 174**8 leaves of 256 KiB is far beyond any real file; deeper trees are hostile.
MAX_TREE_DEPTH = 8


class InvalidBlock(RemoteProtocolError):
    """A block or CID from outside is malformed, or a block does not match its CID."""


@dataclass(frozen=True)
class Block:
    """A block of bytes and the CID (binary CIDv1) that names it."""

    cid: bytes
    data: bytes


@dataclass(frozen=True)
class NodeLink:
    """One child of a dag-pb file node: its CID and cumulative size (``Tsize``)."""

    cid: bytes
    tsize: int


@dataclass(frozen=True)
class FileNode:
    """A decoded UnixFS file node: its children and the file bytes each one covers."""

    links: tuple[NodeLink, ...]
    filesize: int
    blocksizes: tuple[int, ...]


# --------------------------------------------------------------------------- CIDs


def raw_cid(block: bytes | memoryview) -> bytes:
    """The binary CIDv1 of `block` as a raw leaf (codec 0x55, sha2-256)."""
    return _CID_PREFIX_RAW + hashlib.sha256(block).digest()


def dag_pb_cid(node: bytes) -> bytes:
    """The binary CIDv1 of an encoded dag-pb `node` (codec 0x70, sha2-256)."""
    return _CID_PREFIX_DAG_PB + hashlib.sha256(node).digest()


def cid_codec(cid: bytes) -> int:
    """The codec of a binary CID we accept (raw or dag-pb, sha2-256); else `InvalidBlock`."""
    if len(cid) != CID_SIZE:
        raise InvalidBlock("a CID has an unexpected length")
    prefix = cid[:4]
    if prefix == _CID_PREFIX_RAW:
        return CODEC_RAW
    if prefix == _CID_PREFIX_DAG_PB:
        return CODEC_DAG_PB
    raise InvalidBlock("only CIDv1 raw or dag-pb blocks with sha2-256 are accepted")


def block_matches(cid: bytes, data: bytes | memoryview) -> bool:
    """Whether `data` is the block named by `cid` (the sha2-256 digest matches)."""
    cid_codec(cid)
    return hashlib.sha256(data).digest() == cid[4:]


def verify_block(cid: bytes, data: bytes) -> Block:
    """`Block(cid, data)` if `data` hashes to `cid`; `InvalidBlock` otherwise."""
    if not block_matches(cid, data):
        raise InvalidBlock("block content does not match its CID")
    return Block(cid, data)


def cid_to_str(cid: bytes) -> str:
    """The multibase base32 text of a binary CID (``bafk...``/``bafy...``)."""
    cid_codec(cid)
    return "b" + base64.b32encode(cid).decode("ascii").lower().rstrip("=")


def cid_from_str(text: str) -> bytes:
    """Parse the base32 text form of a CID we accept; `InvalidBlock` if it isn't one."""
    if not text.startswith("b") or len(text) != 59 or text != text.lower():
        raise InvalidBlock("not a base32 CIDv1")
    body = text[1:].upper()
    try:
        cid = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise InvalidBlock("not a base32 CIDv1") from None
    cid_codec(cid)
    if cid_to_str(cid) != text:
        raise InvalidBlock("non-canonical CID text")
    return cid


# --------------------------------------------------------------------------- protobuf


def encode_varint(value: int) -> bytes:
    """Protobuf unsigned varint (LEB128) of a uint64. Unlike `app.core.cid.encode_varint`
    (multiformats, at most 63 bits), protobuf fields such as UnixFS sizes are 64-bit."""
    if value < 0 or value >= 1 << 64:
        raise LocalProtocolError("varint out of range")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 64, 7):
        if pos >= len(data):
            raise InvalidBlock("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise InvalidBlock("non-minimal varint")
            return value, pos
    raise InvalidBlock("varint too long")


def _field_bytes(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def _field_varint(number: int, value: int) -> bytes:
    return encode_varint(number << 3) + encode_varint(value)


def _read_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Split a protobuf message into (field number, varint value or bytes) pairs."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
            fields.append((number, value))
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise InvalidBlock("truncated protobuf field")
            fields.append((number, data[pos : pos + length]))
            pos += length
        else:
            raise InvalidBlock("unexpected protobuf wire type")
    return fields


# --------------------------------------------------------------------------- dag-pb


def encode_file_node(links: list[NodeLink], blocksizes: list[int]) -> bytes:
    """Encode a dag-pb UnixFS File node over `links` covering `blocksizes` file bytes."""
    if not links or len(links) != len(blocksizes) or len(links) > MAX_LINKS_PER_NODE:
        raise LocalProtocolError("a file node needs 1..174 links, one block size each")
    unixfs = _field_varint(1, UNIXFS_TYPE_FILE) + _field_varint(3, sum(blocksizes))
    unixfs += b"".join(_field_varint(4, size) for size in blocksizes)
    out = bytearray()
    for link in links:
        pb_link = _field_bytes(1, link.cid) + _field_bytes(2, b"") + _field_varint(3, link.tsize)
        out += _field_bytes(2, pb_link)
    out += _field_bytes(1, unixfs)
    return bytes(out)


def decode_file_node(data: bytes) -> FileNode:
    """Parse a dag-pb UnixFS File node as `encode_file_node` writes it; strict, bounded."""
    if len(data) > MAX_NODE_SIZE:
        raise InvalidBlock("dag-pb node too large")
    links: list[NodeLink] = []
    unixfs: bytes | None = None
    for number, value in _read_fields(data):
        if number == 2 and isinstance(value, bytes) and unixfs is None:
            links.append(_decode_link(value))
        elif number == 1 and isinstance(value, bytes) and unixfs is None:
            unixfs = value
        else:
            raise InvalidBlock("unexpected field in dag-pb node")
    if unixfs is None or not links or len(links) > MAX_LINKS_PER_NODE:
        raise InvalidBlock("dag-pb node is not a UnixFS file node")
    kind, filesize, blocksizes = None, None, []
    for number, value in _read_fields(unixfs):
        if number == 1 and isinstance(value, int) and kind is None:
            kind = value
        elif number == 3 and isinstance(value, int) and filesize is None:
            filesize = value
        elif number == 4 and isinstance(value, int):
            blocksizes.append(value)
        else:
            raise InvalidBlock("unexpected field in UnixFS data")
    if kind != UNIXFS_TYPE_FILE or filesize != sum(blocksizes) or len(blocksizes) != len(links):
        raise InvalidBlock("UnixFS data does not describe this node's links")
    node = FileNode(tuple(links), filesize, tuple(blocksizes))
    if encode_file_node(list(node.links), list(node.blocksizes)) != data:
        raise InvalidBlock("dag-pb node is not in canonical form")
    return node


def _decode_link(data: bytes) -> NodeLink:
    fields = _read_fields(data)
    if len(fields) != 3 or [n for n, _ in fields] != [1, 2, 3]:
        raise InvalidBlock("dag-pb link must have Hash, Name and Tsize")
    cid, name, tsize = (v for _, v in fields)
    if not isinstance(cid, bytes) or name != b"" or not isinstance(tsize, int):
        raise InvalidBlock("malformed dag-pb link")
    cid_codec(cid)
    return NodeLink(cid, tsize)


# --------------------------------------------------------------------------- builder


@dataclass(frozen=True)
class _Entry:
    cid: bytes
    filesize: int
    tsize: int


class UnixfsFileBuilder:
    """Build the UnixFS DAG of a stream fed one block at a time; memory stays bounded.

    Feed every block (each `BLOCK_SIZE` bytes except possibly the last) to `add_block`,
    which returns the blocks to store: the leaf, plus any dag-pb node that became
    complete. `finish` returns the root CID and the remaining nodes. The root and every
    block match what Kubo/js-ipfs produce for the same bytes.
    """

    def __init__(self, block_size: int = BLOCK_SIZE) -> None:
        self._block_size = block_size
        self._levels: list[list[_Entry]] = [[]]
        self._last_short = False
        self._finished = False
        self.leaf_count = 0
        self.total_size = 0

    def add_block(self, data: bytes) -> list[Block]:
        """Add the next leaf; return it and any node completed by it."""
        leaf = Block(raw_cid(data), data)
        return [leaf, *self.add_leaf(leaf)]

    def add_leaf(self, leaf: Block) -> list[Block]:
        """Add the next leaf, already addressed by the caller (who checked its CID is
        `raw_cid` of its data, e.g. in another thread); return the nodes it completed."""
        return self.add_addressed(leaf.cid, len(leaf.data))

    def add_addressed(self, cid: bytes, size: int) -> list[Block]:
        """Add the next leaf by its CID and size alone (its bytes are elsewhere, e.g. a
        receiver checking a tree against the blocks it hashed); the completed nodes."""
        if self._finished:
            raise LocalProtocolError("builder already finished")
        if size > self._block_size:
            raise LocalProtocolError("block larger than the chunk size")
        if self._last_short:
            raise LocalProtocolError("only the last block may be shorter than the chunk size")
        self._last_short = size < self._block_size
        self.leaf_count += 1
        self.total_size += size
        out: list[Block] = []
        self._push(0, _Entry(cid, size, size), out)
        return out

    def finish(self) -> tuple[bytes, list[Block]]:
        """The root CID, and the dag-pb nodes not yet returned (the root among them)."""
        if self._finished:
            raise LocalProtocolError("builder already finished")
        out: list[Block] = []
        if self.leaf_count == 0:
            out.extend(self.add_block(b""))
        self._finished = True
        level = 0
        while True:
            entries = self._levels[level]
            is_top = level == len(self._levels) - 1
            if is_top and len(entries) == 1:
                return entries[0].cid, out
            if entries:
                self._levels[level] = []
                parent = self._make_node(entries, out)
                if is_top:
                    self._levels.append([])
                self._levels[level + 1].append(parent)
            level += 1

    def _push(self, level: int, entry: _Entry, out: list[Block]) -> None:
        if level == len(self._levels):
            self._levels.append([])
        entries = self._levels[level]
        entries.append(entry)
        if len(entries) == MAX_LINKS_PER_NODE:
            self._levels[level] = []
            self._push(level + 1, self._make_node(entries, out), out)

    @staticmethod
    def _make_node(entries: list[_Entry], out: list[Block]) -> _Entry:
        links = [NodeLink(e.cid, e.tsize) for e in entries]
        node = encode_file_node(links, [e.filesize for e in entries])
        cid = dag_pb_cid(node)
        out.append(Block(cid, node))
        return _Entry(
            cid, sum(e.filesize for e in entries), len(node) + sum(e.tsize for e in entries)
        )


def file_root_cid(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    """The root CID of `data` held in memory (convenience for small inputs and tests)."""
    builder = UnixfsFileBuilder(block_size)
    for start in range(0, len(data), block_size):
        builder.add_block(data[start : start + block_size])
    return builder.finish()[0]


def leaf_count(size: int, block_size: int = BLOCK_SIZE) -> int:
    """How many leaves a stream of `size` bytes has (the empty stream has one)."""
    return max(1, -(-size // block_size))


def iter_leaves(
    root: bytes,
    load_node: Callable[[bytes], bytes],
    total_size: int,
    max_leaves: int,
) -> Iterator[tuple[bytes, int]]:
    """Yield ``(leaf CID, leaf size)`` of the file DAG under `root`, in file order.

    `load_node` returns the (already verified) bytes of a dag-pb node. Each node must
    cover exactly the bytes its parent says, the tree may not be deeper than
    `MAX_TREE_DEPTH` nor have more than `max_leaves` leaves; else `InvalidBlock`.
    Memory: at most depth * 174 pending links.
    """
    stack: list[tuple[bytes, int, int]] = [(root, total_size, 0)]
    leaves = 0
    while stack:
        cid, size, depth = stack.pop()
        if cid_codec(cid) == CODEC_RAW:
            leaves += 1
            if leaves > max_leaves or size > BLOCK_SIZE:
                raise InvalidBlock("file DAG has more or larger leaves than announced")
            yield cid, size
            continue
        if depth >= MAX_TREE_DEPTH:
            raise InvalidBlock("file DAG is too deep")
        node = decode_file_node(load_node(cid))
        if node.filesize != size:
            raise InvalidBlock("file DAG node does not cover the announced size")
        for link, child_size in reversed(list(zip(node.links, node.blocksizes, strict=True))):
            stack.append((link.cid, child_size, depth + 1))
