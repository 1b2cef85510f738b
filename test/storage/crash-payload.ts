// The payload the crash test child writes at each index, so the parent can check it intact.
export function payloadFor (i: number): Uint8Array {
  const n = 16 + (i % 200)
  const out = new Uint8Array(n)
  for (let k = 0; k < n; k++) out[k] = (i * 131 + k * 7) & 255
  return out
}
