// The judge of the tiny guest's disk writer log (node/qemu/disk-writer-log.ts): a clean handover
// passes; the histories a VM running on two hosts at once leaves on its disk fail, each with a
// sentence that names the writers; the reader stops at the first empty region and reports garbage.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import {
  SECTOR, WRITER_BASE_SECTOR, WRITER_MAX_REGIONS, WRITER_REGION, encodeWriterRegion, judgeWriterLog, parseWriterSlot, readWriterLog,
  type WriterRecord, type WriterRegion
} from '../../node/qemu/disk-writer-log.ts'

const recs = (host: string, boot: string, from: number, to: number): WriterRecord[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ counter: from + i, host, boot }))

/** A disk image in memory: the log regions at their offsets, zeros elsewhere. */
function disk (regions: Buffer[]): (offset: number, length: number) => Promise<Uint8Array> {
  return async (offset, length) => {
    const out = Buffer.alloc(length)
    regions.forEach((r, i) => {
      const at = (WRITER_BASE_SECTOR + i * WRITER_REGION) * SECTOR
      const from = Math.max(offset, at)
      const to = Math.min(offset + length, at + r.length)
      if (from < to) r.copy(out, from - offset, from - at, to - at)
    })
    return out
  }
}

test('a clean handover: node1 writes 1..50, node2 continues at 51: ok, two writers in order', async () => {
  const regions = await readWriterLog(disk([encodeWriterRegion(recs('node1', 'aa11', 1, 50)), encodeWriterRegion(recs('node2', 'bb22', 51, 70))]))
  const v = judgeWriterLog(regions)
  assert.equal(v.problems, [])
  assert.ok(v.ok)
  assert.equal(v.writers.map((w) => [w.host, w.first, w.last, w.count]), [['node1', 1, 50, 50], ['node2', 51, 70, 20]])
})

test('the old host keeps writing after the new one started: the counter goes backwards, two writers at once', async () => {
  // node2 booted after reading 50; node1, not fenced, went on to 53
  const v = judgeWriterLog(await readWriterLog(disk([encodeWriterRegion(recs('node1', 'aa11', 1, 53)), encodeWriterRegion(recs('node2', 'bb22', 51, 70))])))
  assert.not.ok(v.ok)
  assert.is(v.problems.length, 1)
  assert.match(v.problems[0], /goes backwards from 53 to 51: node1 \(boot aa11\) wrote 3 record\(s\) after node2 \(boot bb22\) had started/)
})

test('records of two writers mixed in one region, or a writer back after another: interleaved', () => {
  const mixed: WriterRegion = { index: 0, garbled: [], records: [...recs('node1', 'aa11', 1, 3), ...recs('node2', 'bb22', 4, 5), ...recs('node1', 'aa11', 6, 6)] }
  const v = judgeWriterLog([mixed])
  assert.not.ok(v.ok)
  assert.ok(v.problems.some((p) => /holds records of node1 \(boot aa11\) and of node2 \(boot bb22\)/.test(p)), v.problems.join('\n'))
  const back = judgeWriterLog([
    { index: 0, garbled: [], records: recs('node1', 'aa11', 1, 3) },
    { index: 1, garbled: [], records: recs('node2', 'bb22', 4, 6) },
    { index: 2, garbled: [], records: recs('node1', 'aa11', 7, 8) }
  ])
  assert.not.ok(back.ok)
  assert.match(back.problems.join('\n'), /node1 \(boot aa11\) writes again in region 2 after another writer/)
})

test('lost records and garbage are problems too; the same host with a new boot is a new writer', async () => {
  const gap = judgeWriterLog([{ index: 0, garbled: [], records: recs('n', 'a1', 1, 3) }, { index: 1, garbled: [], records: recs('n', 'b2', 9, 9) }])
  assert.match(gap.problems.join('\n'), /skips from 3 to 9 between n \(boot a1\) and n \(boot b2\)/)
  const same = judgeWriterLog([{ index: 0, garbled: [], records: recs('n', 'a1', 1, 3) }, { index: 1, garbled: [], records: recs('n', 'b2', 4, 4) }])
  assert.ok(same.ok)
  const bad = encodeWriterRegion(recs('node1', 'aa11', 1, 2))
  bad.write('BLXW x node1\n', 2 * SECTOR, 'latin1')
  const regions = await readWriterLog(disk([bad]))
  assert.equal(regions[0].garbled, ['region 0 slot 2: "BLXW x node1"'])
  assert.not.ok(judgeWriterLog(regions).ok)
})

test('the reader: an empty disk has no regions; it stops at the first empty region; slots parse exactly', async () => {
  assert.equal(await readWriterLog(disk([])), [])
  const regions = await readWriterLog(disk([encodeWriterRegion(recs('a', '1', 1, 2)), Buffer.alloc(0), encodeWriterRegion(recs('b', '2', 3, 4))]))
  assert.is(regions.length, 1)
  assert.is(WRITER_MAX_REGIONS * WRITER_REGION * SECTOR + WRITER_BASE_SECTOR * SECTOR <= 2 ** 30, true, 'the log fits a 1 GiB volume')
  const slot = Buffer.alloc(SECTOR)
  slot.write('BLXW 12 node3 0f9a\n')
  assert.equal(parseWriterSlot(slot), { counter: 12, host: 'node3', boot: '0f9a' })
  assert.is(parseWriterSlot(Buffer.alloc(SECTOR)), null)
})

test.run()
