// What the dashboard page needs to sign an admin command itself, as page JavaScript (the page has
// no build step): the command's canonical bytes (protocols/auth.ts signingBytes: our CBOR, as
// storage/codec.ts writes it) and the libp2p peer id of an Ed25519 public key. The browser's key is
// a WebCrypto Ed25519 key made non-extractable in the page, so no node ever holds it; the node only
// relays the signed command, which the leader and every replica check like the CLI's.
// test/ops/dashboard-signing.test.ts runs this very text in Node against encodeCbor and
// @libp2p/peer-id, so the page and the nodes agree on every byte.

/** The page's signing helpers: `cborEncode(value)` (objects, arrays, strings, 32-bit integers,
 * booleans, null — what an action's command holds; anything else throws rather than sign bytes the
 * nodes would encode otherwise), `peerIdOfEd25519(raw32)`, `signingBytes(cmd, signer, nonce, until)`. */
export const PAGE_SIGNING_JS = String.raw`
const SIGNING_DOMAIN = 'blixard-command/1';
function cborEncode (value) {
  const out = [];
  const head = (major, n) => {
    if (n < 24) out.push((major << 5) | n);
    else if (n < 0x100) out.push((major << 5) | 24, n);
    else if (n < 0x10000) out.push((major << 5) | 25, n >> 8, n & 0xff);
    else out.push((major << 5) | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
  };
  const enc = (v) => {
    if (v === null) { out.push(0xf6); return }
    if (v === true) { out.push(0xf5); return }
    if (v === false) { out.push(0xf4); return }
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v > 0xffffffff || v < -0x100000000) throw new Error('cannot sign the number ' + v);
      if (v >= 0) head(0, v); else head(1, -1 - v);
      return;
    }
    if (typeof v === 'string') { const b = new TextEncoder().encode(v); head(3, b.length); for (const x of b) out.push(x); return }
    if (Array.isArray(v)) { head(4, v.length); for (const x of v) enc(x); return }
    if (typeof v === 'object') {
      // our encoder writes every object as a map with a 16-bit length, keys in insertion order
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      if (keys.length > 0xffff) throw new Error('object too large to sign');
      out.push(0xb9, keys.length >> 8, keys.length & 0xff);
      for (const k of keys) { enc(k); enc(v[k]) }
      return;
    }
    throw new Error('cannot sign a ' + typeof v);
  };
  enc(value);
  return new Uint8Array(out);
}
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
function base58btc (bytes) {
  let n = 0n;
  for (const b of bytes) n = n * 256n + BigInt(b);
  let s = '';
  while (n > 0n) { s = B58[Number(n % 58n)] + s; n /= 58n }
  for (const b of bytes) { if (b !== 0) break; s = '1' + s }
  return s;
}
// identity multihash (0x00, length 36) of the protobuf PublicKey { Type: Ed25519 (1), Data: 32 bytes }
function peerIdOfEd25519 (raw) {
  if (raw.length !== 32) throw new Error('an Ed25519 public key has 32 bytes');
  return base58btc(new Uint8Array([0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...raw]));
}
function signingBytes (cmd, signer, nonce, until) { return cborEncode([SIGNING_DOMAIN, null, signer, nonce, until, cmd]) }
`
