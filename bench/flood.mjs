// "Quiet tenant during a flood" (issue 16): one tenant keeps many slow queries in flight on a small
// pool while another runs one-row queries one at a time. Without a quota the flood holds every
// connection and the quiet tenant's query waits behind it in the pool's queue; with maxPerTenant
// the flood waits in its own queue and the quiet tenant finds a free connection. Both variants run
// in the same process, round by round, alternating which goes first; the quiet tenant's latencies
// of all rounds are pooled into one p50 / p99 per variant.
import pg from 'pg'
import { createTenantPool } from '../dist/index.js'
import { POINT } from './rows.mjs'

export const FLOOD = 'quiet tenant during a flood'

const POOL = 4
const FLOOD_IN_FLIGHT = 46
const SLEEP = 'select pg_sleep(0.02)'
const QUOTA = 2

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

/**
 * @param {string} url the application role's URL
 * @param {{ rounds: number, millis: number }} options
 * @returns {Promise<Array<{ name: string, p50: number, p99: number, quiet: number, floodOpsPerSecond: number }>>}
 */
export async function runFloodBench(url, { rounds, millis }) {
  const variants = [
    { name: 'no maxPerTenant', options: {} },
    { name: `maxPerTenant: ${QUOTA}`, options: { maxPerTenant: QUOTA } },
  ].map((variant) => {
    const pool = new pg.Pool({ connectionString: url, max: POOL })
    pool.on('error', () => undefined)
    return { ...variant, pool, db: createTenantPool(pool, variant.options), latencies: [], floodOps: 0, ms: 0 }
  })

  // One run: the flood keeps FLOOD_IN_FLIGHT sleeps of org_2 in flight; once it has filled the
  // pool, org_1 sends one-row queries one after another until the time is up.
  async function run(variant) {
    const { db } = variant
    let flooding = true
    const floodWorker = async () => {
      while (flooding) {
        await db.runWithTenant('org_2', () => db.query(SLEEP))
        variant.floodOps++
      }
    }
    const started = performance.now()
    const workers = Array.from({ length: FLOOD_IN_FLIGHT }, floodWorker)
    await new Promise((r) => setTimeout(r, 50))
    const until = performance.now() + millis
    let id = 0
    while (performance.now() < until) {
      const sent = performance.now()
      await db.runWithTenant('org_1', () => db.query(POINT, [(id++ % 1000) * 10 + 1]))
      variant.latencies.push(performance.now() - sent)
    }
    flooding = false
    await Promise.all(workers)
    variant.ms += performance.now() - started
  }

  // A warm-up opens the connections and prepares the statements.
  for (const variant of variants) await run({ ...variant, latencies: [], floodOps: 0, ms: 0 })
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse()
    for (const variant of order) await run(variant)
  }
  await Promise.all(variants.map((v) => v.pool.end()))

  return variants.map(({ name, latencies, floodOps, ms }) => {
    const sorted = [...latencies].sort((a, b) => a - b)
    return {
      name,
      p50: Number(percentile(sorted, 50).toFixed(2)),
      p99: Number(percentile(sorted, 99).toFixed(2)),
      quiet: sorted.length,
      floodOpsPerSecond: Math.round((floodOps * 1000) / ms),
    }
  })
}

/** The table for humans. */
export function printFlood(results, { rounds, millis }) {
  console.log(
    `\n${FLOOD}: pool ${POOL}, org_2 keeps ${FLOOD_IN_FLIGHT} x ${SLEEP} in flight, org_1 sends one-row queries one at a time; ` +
      `${rounds} rounds of ${millis} ms, org_1's latency over all rounds:`,
  )
  const width = Math.max(...results.map((r) => r.name.length))
  console.log(`${'variant'.padEnd(width)}  ${'p50 ms'.padStart(8)}  ${'p99 ms'.padStart(8)}  ${'queries'.padStart(8)}  ${'flood ops/s'.padStart(11)}`)
  for (const r of results) {
    console.log(
      `${r.name.padEnd(width)}  ${r.p50.toFixed(2).padStart(8)}  ${r.p99.toFixed(2).padStart(8)}  ${String(r.quiet).padStart(8)}  ${String(r.floodOpsPerSecond).padStart(11)}`,
    )
  }
}
