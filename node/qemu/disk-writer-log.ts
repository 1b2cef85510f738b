// The tiny guest's disk writer (scripts/build-tiny-guest.sh, blix.disk=1) and its judge: the HA rule
// "a VM never runs on two hosts at once", checked on the disk itself. From sector WRITER_BASE the
// raw disk holds 512-byte records `BLXW <counter> <host> <boot id>`, one region of WRITER_REGION
// records per guest boot, each region contiguous from its start. A booting writer takes the first
// empty region and continues the counter from the last record of the region before it.
//
// So, read in region order, the counter of a correct history rises by exactly one from record to
// record. A writer that keeps going on a fenced host while the VM already runs elsewhere writes
// counters the new writer also writes (it read the old one's last counter at boot): the counter
// goes backwards where the new region starts — a record from the old host after one from the new.
// Pure: the caller supplies the bytes (an exported image, a file).

/** First sector of the log (128 MiB: the guest's filesystem takes the first 64 MiB). */
export const WRITER_BASE_SECTOR = 262_144
/** Records per region (one region per boot: 13 min of writing at one record per 100 ms). */
export const WRITER_REGION = 8_192
/** Regions (boots) the log holds. */
export const WRITER_MAX_REGIONS = 64
export const SECTOR = 512

export interface WriterRecord { counter: number, host: string, boot: string }

/** One region as read: its records until the first empty slot; bad slots say what was wrong. */
export interface WriterRegion { index: number, records: WriterRecord[], garbled: string[] }

export interface WriterSpan { host: string, boot: string, region: number, first: number, last: number, count: number }

export interface WriterVerdict {
  ok: boolean
  /** each writer (one guest boot) in log order */
  writers: WriterSpan[]
  /** what is wrong, one sentence each; empty when ok */
  problems: string[]
}

const RECORD = /^BLXW (\d{1,15}) ([^\s]{1,64}) ([0-9a-f]{1,32})$/

/** A slot's 512 bytes: null when empty (never written), else the record or why it is not one. */
export function parseWriterSlot (slot: Uint8Array): WriterRecord | { bad: string } | null {
  if (slot.every((b) => b === 0)) return null
  const text = Buffer.from(slot).toString('latin1').replace(/\0+$/, '')
  const line = text.split('\n')[0]
  const m = RECORD.exec(line)
  if (m == null) return { bad: JSON.stringify(line.slice(0, 60)) }
  return { counter: Number(m[1]), host: m[2], boot: m[3] }
}

/** Reads the log through `read(byteOffset, length)`: regions until the first empty one. */
export async function readWriterLog (read: (offset: number, length: number) => Promise<Uint8Array>): Promise<WriterRegion[]> {
  const regions: WriterRegion[] = []
  for (let r = 0; r < WRITER_MAX_REGIONS; r++) {
    const bytes = await read((WRITER_BASE_SECTOR + r * WRITER_REGION) * SECTOR, WRITER_REGION * SECTOR)
    const region: WriterRegion = { index: r, records: [], garbled: [] }
    for (let i = 0; i < WRITER_REGION; i++) {
      const slot = bytes.subarray(i * SECTOR, (i + 1) * SECTOR)
      if (slot.length < SECTOR) break
      const rec = parseWriterSlot(slot)
      if (rec == null) break
      if ('bad' in rec) region.garbled.push(`region ${r} slot ${i}: ${rec.bad}`)
      else region.records.push(rec)
    }
    if (region.records.length === 0 && region.garbled.length === 0) break
    regions.push(region)
  }
  return regions
}

/** The judge: one writer per region, the counter rising by one through the whole log. */
export function judgeWriterLog (regions: readonly WriterRegion[]): WriterVerdict {
  const problems: string[] = []
  const writers: WriterSpan[] = []
  const who = (w: { host: string, boot: string }): string => `${w.host} (boot ${w.boot})`
  let prev: WriterRecord | null = null
  let prevSpan: WriterSpan | null = null
  for (const region of regions) {
    problems.push(...region.garbled.map((g) => `garbled record: ${g}`))
    if (region.records.length === 0) continue
    const head = region.records[0]
    const span: WriterSpan = { host: head.host, boot: head.boot, region: region.index, first: head.counter, last: head.counter, count: 0 }
    if (writers.some((w) => w.boot === head.boot && w.host === head.host)) {
      problems.push(`${who(head)} writes again in region ${region.index} after another writer: two writers interleaved`)
    }
    for (const rec of region.records) {
      if (rec.boot !== span.boot || rec.host !== span.host) {
        problems.push(`region ${region.index} holds records of ${who(span)} and of ${who(rec)} (counter ${rec.counter}): two writers interleaved`)
      }
      if (prev != null && rec.counter !== prev.counter + 1) {
        const between = rec === head && prevSpan != null
        if (rec.counter <= prev.counter) {
          problems.push(between
            ? `the counter goes backwards from ${prev.counter} to ${rec.counter}: ${who(prevSpan!)} wrote ${prev.counter - rec.counter + 1} record(s) after ${who(rec)} had started from its last one — two writers at once`
            : `the counter goes backwards from ${prev.counter} to ${rec.counter} in region ${region.index}`)
        } else {
          problems.push(`the counter skips from ${prev.counter} to ${rec.counter}${between ? ` between ${who(prevSpan!)} and ${who(rec)}` : ` in region ${region.index}`}: records lost`)
        }
      }
      span.last = rec.counter
      span.count++
      prev = rec
    }
    writers.push(span)
    prevSpan = span
  }
  return { ok: problems.length === 0, writers, problems }
}

/** Records as they would lie on the disk, for tests of the judge: one Buffer per region. */
export function encodeWriterRegion (records: readonly WriterRecord[]): Buffer {
  const out = Buffer.alloc(WRITER_REGION * SECTOR)
  records.forEach((r, i) => { out.write(`BLXW ${r.counter} ${r.host} ${r.boot}\n`, i * SECTOR, 'latin1') })
  return out
}
