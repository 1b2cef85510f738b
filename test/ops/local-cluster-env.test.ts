// The tour's `source DIR/env`: the env file lives in the cluster's own dir and names that
// cluster's node and key, so `--dir` elsewhere does not leave the tour reading another run's file,
// and it goes when the cluster stops, so a stale one is never read as live.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { prepareLocalCluster, removeEnvFile, writeEnvFile } from '../../scripts/local-cluster.ts'

test('two cluster dirs, two env files, each naming its own cluster; gone when it stops', async () => {
  const base = mkdtempSync(join(tmpdir(), 'blixard-env-'))
  try {
    const a = await prepareLocalCluster({ dir: join(base, 'a'), basePort: 7301, nodes: 1 })
    const b = await prepareLocalCluster({ dir: join(base, 'b'), basePort: 7401, nodes: 1 })
    const fa = writeEnvFile(a)
    const fb = writeEnvFile(b)
    assert.is(fa, join(base, 'a', 'env'))
    assert.is(fb, join(base, 'b', 'env'))
    assert.match(readFileSync(fb, 'utf8'), `export BLIXARD_PEER=${b.nodes[0].addr}\n`)
    assert.match(readFileSync(fb, 'utf8'), `export BLIXARD_CLUSTER_KEY_FILE=${join(base, 'b', 'cluster.key')}\n`)
    assert.match(readFileSync(fa, 'utf8'), `/tcp/7301/p2p/${a.nodes[0].peerId}`)
    removeEnvFile(a)
    assert.not.ok(existsSync(fa), 'a stopped cluster leaves no env file to source')
    assert.ok(existsSync(fb))
  } finally { rmSync(base, { recursive: true, force: true }) }
})

test.run()
