// Side-by-side benchmarks of pg-tenant against raw pg, Kysely and the patterns it replaces, in one
// process, against one embedded PostgreSQL (or DATABASE_URL, a superuser URL).
//
//   npm run bench                  a table for humans
//   npm run bench -- --json        the same results as JSON
//   npm run bench -- --quick       fewer rounds, shorter runs (a smoke test; the latency run is brief)
//   npm run bench -- --latency     with --quick: the latency run at --quick's full length
//   npm run bench -- --no-latency  no latency run and no round-trip count
//   npm run bench -- --no-policy   skip the policy benchmark (bench/policy.mjs) that follows
//   BENCH_POOL_SIZE, BENCH_IN_FLIGHT, BENCH_LATENCY_MS (default 1) tune the runs
//   BENCH_ONLY=<regexp>            only the matching rows (and their baselines); BENCH_ONLY=flood
//                                  runs only "quiet tenant during a flood" (flood.mjs)
//
// Each row runs for a fixed time with a fixed number of operations in flight; rows are
// interleaved round by round so drift in the machine hits all of them alike; the median of the
// rounds is reported, with its ratio to the row running the same statements with no tenant work
// (rows.mjs says which).
//
// The latency run sends the key rows through a loopback proxy (proxy.mjs) that delays every chunk
// by BENCH_LATENCY_MS each way: there round trips, not CPU, decide. The same proxy counts the round
// trips each row's operation takes on the wire, printed in the legend.
import os from 'node:os'
import pg from 'pg'
import { startEmbeddedPostgres } from '../scripts/embedded-postgres.mjs'
import { FLOOD, printFlood, runFloodBench } from './flood.mjs'
import { startLatencyProxy } from './proxy.mjs'
import { buildRows, POINT, nextId, RAW, RAW_3, RAW_KYSELY, RAW_KYSELY_TX } from './rows.mjs'

const args = new Set(process.argv.slice(2))
const json = args.has('--json')
const quick = args.has('--quick')
const ROUNDS = quick ? 2 : 5
const MILLIS = quick ? 300 : 1000
const POOL_SIZE = Number(process.env.BENCH_POOL_SIZE ?? 8)
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 32)
const DELAY_MS = Number(process.env.BENCH_LATENCY_MS ?? 1)
// The latency run: full by default, a brief smoke run with --quick (unless --latency), or none.
let LATENCY = args.has('--no-latency')
  ? undefined
  : quick && !args.has('--latency')
    ? { rounds: 1, millis: 150 }
    : { rounds: ROUNDS, millis: MILLIS }
// Operations per row for the round-trip count, after a warm-up that opens connections and
// prepares statements (a connection's startup is not an operation's cost).
const COUNTED_OPS = quick ? 5 : 20
const log = (...a) => {
  if (!json) console.log(...a)
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const server = process.env.DATABASE_URL ? { url: process.env.DATABASE_URL, stop: async () => {} } : await startEmbeddedPostgres()
const admin = new pg.Client({ connectionString: server.url })
await admin.connect()
const db = 'pg_tenant_bench'
await admin.query(`drop database if exists ${db} with (force)`)
for (const r of ['bench_app', 'bench_owner']) await admin.query(`drop role if exists ${r}`)
await admin.query(`drop role if exists bench_sales`)
await admin.query(`create role bench_owner nologin`)
await admin.query(`create role bench_app login password 'bench' noinherit nosuperuser nobypassrls`)
await admin.query(`create role bench_sales nologin`)
await admin.query(`create database ${db} owner bench_owner`)
await admin.end()

const serverUrl = new URL(server.url)
serverUrl.pathname = `/${db}`
const superDb = new pg.Pool({ connectionString: serverUrl.toString(), max: 2 })
await superDb.query(`set role bench_owner;
  create table events (id int primary key, org_id text not null, kind text not null);
  alter table events enable row level security;
  alter table events force row level security;
  create policy events_tenant on events
    using (org_id = (select nullif(current_setting('app.tenant_id', true), '')))
    with check (org_id = (select nullif(current_setting('app.tenant_id', true), '')));
  create table clients (id int primary key, salesperson text not null);
  alter table clients enable row level security;
  alter table clients force row level security;
  create policy clients_salesperson on clients using (salesperson = current_user);
  reset role;
  grant usage on schema public to bench_app, bench_sales;
  grant select on events to bench_app;
  grant select on clients to bench_sales;
  insert into events select i, 'org_' || (i % 10), 'k' from generate_series(1, 10000) i;`)
const version = (await superDb.query('show server_version')).rows[0].server_version

// Roles for the role-per-user model: 10,000 of them, all granted to the login role.
const ROLE_COUNT = quick ? 1000 : 10000
await superDb.query(`do $$ begin
  for i in 1..${ROLE_COUNT} loop
    execute format('create role %I nologin in role bench_sales', 'bench_sales_' || i);
    execute format('grant %I to bench_app', 'bench_sales_' || i);
  end loop; end $$`)
await superDb.query(`insert into clients select i, 'bench_sales_' || (i % ${ROLE_COUNT} + 1) from generate_series(1, 10000) i`)

const appUrl = new URL(serverUrl)
appUrl.username = 'bench_app'
appUrl.password = 'bench'
const rowOptions = { poolSize: POOL_SIZE, roleCount: ROLE_COUNT }
const direct = buildRows(appUrl.toString(), rowOptions)

// The same rows on their own pools, through the proxy. It needs PostgreSQL on TCP: a DATABASE_URL
// with a Unix socket (no host in the URL) runs without it.
let proxy
let proxied
if (LATENCY && !appUrl.hostname) {
  log('no latency run: the server is not reached over TCP\n')
  LATENCY = undefined
}
if (LATENCY) {
  const host = appUrl.hostname.replace(/^\[(.*)\]$/, '$1') // an IPv6 address loses its brackets
  proxy = await startLatencyProxy({ host, port: Number(appUrl.port || 5432), delayMs: DELAY_MS })
  const proxiedUrl = new URL(appUrl)
  proxiedUrl.hostname = '127.0.0.1'
  proxiedUrl.port = String(proxy.port)
  proxied = buildRows(proxiedUrl.toString(), rowOptions)
}

async function measure(fn, millis) {
  const until = performance.now() + millis
  let ops = 0
  const worker = async () => {
    while (performance.now() < until) {
      await fn()
      ops++
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  return (ops * 1000) / (performance.now() - started)
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

// Warms every row, then runs `rounds` rounds, each row once per round, starting each round one row
// further on; returns each row's median ops/s and its ratio to its baseline's median.
async function runRounds(rows, { rounds, millis }) {
  for (const row of rows) await measure(row.run, millis)
  const samples = new Map(rows.map((row) => [row.name, []]))
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < rows.length; i++) {
      const row = rows[(i + round) % rows.length]
      samples.get(row.name).push(await measure(row.run, millis))
    }
  }
  return rows.map(({ name, sends, baseline }) => {
    const opsPerSecond = median(samples.get(name))
    const ratio = opsPerSecond / median(samples.get(baseline))
    return { name, sends, opsPerSecond: Math.round(opsPerSecond), ratio: Number(ratio.toFixed(2)), baseline }
  })
}

// Round trips per operation, counted by the proxy: each row runs alone, one operation at a time.
// The count is read after a pause, so that work a row leaves running after it resolves (a release)
// is counted too.
async function countTrips(rows) {
  const settled = async () => {
    await sleep(20)
    return proxy.trips()
  }
  const trips = new Map()
  for (const row of rows) {
    for (let i = 0; i < 2; i++) await row.run()
    const before = await settled()
    for (let i = 0; i < COUNTED_OPS; i++) await row.run()
    const counted = (await settled()) - before
    trips.set(row.name, Number((counted / COUNTED_OPS).toFixed(2)))
  }
  return trips
}

// The median time of one raw pg.query run alone: the difference between the direct and the
// proxied pools is what the proxy adds to a round trip.
async function roundTripMs(rows) {
  const raw = rows.find((row) => row.name === RAW)
  const times = []
  for (let i = 0; i < 50; i++) {
    const started = performance.now()
    await raw.run()
    times.push(performance.now() - started)
  }
  return median(times)
}

log(`pg-tenant benchmark: PostgreSQL ${version}, Node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}`)
log(`pool ${POOL_SIZE}, ${IN_FLIGHT} operations in flight, ${ROUNDS} rounds of ${MILLIS} ms, median ops/s\n`)

// BENCH_ONLY=<regexp>: only the rows whose names match (and the rows their ratios are taken
// against), for a quick look at a few of them.
const ONLY = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY, 'i') : undefined
const selected = (rows) => {
  if (ONLY === undefined) return rows
  const kept = rows.filter((row) => ONLY.test(row.name))
  const baselines = new Set(kept.map((row) => row.baseline))
  return rows.filter((row) => kept.includes(row) || baselines.has(row.name))
}

const results = await runRounds(selected(direct.rows), { rounds: ROUNDS, millis: MILLIS })
// The quiet tenant's latency during another tenant's flood, without and with maxPerTenant.
const FLOOD_RUN = quick ? { rounds: 2, millis: 1000 } : { rounds: ROUNDS, millis: 2000 }
const flood = ONLY === undefined || ONLY.test(FLOOD) ? await runFloodBench(appUrl.toString(), FLOOD_RUN) : undefined
let latency
let trips
if (LATENCY) {
  const rows = selected(proxied.rows).filter((row) => row.latency)
  const addedMs = (await roundTripMs(proxied.rows)) - (await roundTripMs(direct.rows))
  latency = { delayMs: DELAY_MS, addedRoundTripMs: Number(addedMs.toFixed(2)), ...LATENCY, results: await runRounds(rows, LATENCY) }
  trips = await countTrips(proxied.rows)
  for (const r of [...results, ...latency.results]) r.trips = trips.get(r.name)
}

// Heap after 1,000,000 scopes: every 100th runs a query, the rest take no client.
async function heapGrowth(scopes) {
  const gc = globalThis.gc
  if (!gc) return undefined
  gc()
  const before = process.memoryUsage().heapUsed
  const BATCH = 1000
  for (let done = 0; done < scopes; done += BATCH) {
    const batch = []
    for (let i = 0; i < BATCH; i++) {
      const k = done + i
      batch.push(
        direct.tenants.withTenant(`org_${k % 100000}`, () => (k % 100 === 0 ? direct.tenants.query(POINT, [nextId()]) : k)),
      )
    }
    await Promise.all(batch)
  }
  gc()
  await new Promise((r) => setTimeout(r, 50))
  gc()
  return process.memoryUsage().heapUsed - before
}
const SCOPES = quick ? 100000 : 1000000
const growth = await heapGrowth(SCOPES)

const find = (name) => results.find((r) => r.name === name)
const targets = ONLY
  ? {}
  : {
      'runWithTenant single query >= 0.9x raw': find('pg-tenant runWithTenant + 1 query').ratio >= 0.9,
      'withTenant 3 queries >= 0.7x raw (same 3 statements)': find('pg-tenant withTenant, 3 queries').ratio >= 0.7,
      'heap growth after the scopes < 5 MB': growth !== undefined && growth < 5 * 1024 * 1024,
    }
if (flood) {
  const [without, withQuota] = flood
  targets['quiet tenant during a flood: p99 lower with maxPerTenant'] = withQuota.p99 < without.p99
}
// The round-trip budget of DESIGN.md, counted on the wire.
if (trips && !ONLY) {
  Object.assign(targets, {
    'runWithTenant + 1 query: 1 round trip': find('pg-tenant runWithTenant + 1 query').trips === 1,
    'withTenant, 3 queries: 4 round trips (N + 1)': find('pg-tenant withTenant, 3 queries').trips === 4,
    'Kysely select via db.pool: 1 round trip': find('pg-tenant Kysely via db.pool: select').trips === 1,
    'Kysely transaction of 2 via db.pool: no more trips than Kysely alone':
      find('pg-tenant Kysely via db.pool: transaction of 2').trips <= find(RAW_KYSELY_TX).trips,
  })
}

// Short names for the baselines in the table.
const BASELINE_LABEL = { [RAW_3]: 'raw 3 statements', [RAW_KYSELY]: 'raw Kysely', [RAW_KYSELY_TX]: 'raw Kysely transaction' }

function printTable(rows) {
  const width = Math.max(...rows.map((r) => r.name.length))
  console.log(`${'variant'.padEnd(width)}  ${'ops/s'.padStart(8)}  ratio`)
  for (const r of rows) {
    const vs = r.name === r.baseline || r.baseline === RAW ? '' : ` (vs ${BASELINE_LABEL[r.baseline]})`
    console.log(`${r.name.padEnd(width)}  ${String(r.opsPerSecond).padStart(8)}  ${r.ratio.toFixed(2)}x${vs}`)
  }
}

// One line per row: what one operation sends, and the round trips the proxy counted for it.
function printLegend(rows) {
  const width = Math.max(...rows.map((r) => r.name.length))
  const counted = rows[0].trips !== undefined
  console.log(`\nlegend: ${counted ? 'round trips per operation counted on the wire, and ' : ''}what it sends (expected trips: statements)`)
  for (const r of rows) {
    const count = counted ? `${String(r.trips).padStart(5)}  ` : ''
    console.log(`  ${r.name.padEnd(width)}  ${count}${r.sends}`)
  }
  console.log(`  "budget": DESIGN.md's round-trip budget for pg-tenant${counted ? '; the count is what this build sends' : ''}`)
}

if (json) {
  console.log(
    JSON.stringify(
      { postgres: version, node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, poolSize: POOL_SIZE, inFlight: IN_FLIGHT, rounds: ROUNDS, millis: MILLIS, results, latency, flood: flood && { ...FLOOD_RUN, results: flood }, heap: { scopes: SCOPES, growthBytes: growth }, targets },
      null,
      2,
    ),
  )
} else {
  if (results.length > 0) printTable(results)
  if (flood) printFlood(flood, FLOOD_RUN)
  if (latency) {
    const length = `${latency.rounds} round${latency.rounds === 1 ? '' : 's'} of ${latency.millis} ms`
    console.log(`\nthrough a proxy adding ${DELAY_MS} ms each way (a round trip measured ${latency.addedRoundTripMs} ms slower), ${length}:`)
    printTable(latency.results)
  }
  if (results.length > 0) printLegend(results)
  console.log(
    `\nheap growth after ${SCOPES.toLocaleString('en')} scopes: ${growth === undefined ? 'n/a (run node with --expose-gc)' : `${(growth / 1024 / 1024).toFixed(2)} MB`}`,
  )
  console.log('\ntargets:')
  for (const [name, ok] of Object.entries(targets)) console.log(`  ${ok ? 'met    ' : 'MISSED '} ${name}`)
}

await direct.end()
await proxied?.end()
await proxy?.close()
await superDb.query(`drop owned by bench_app`).catch(() => undefined)
await superDb.end()
await server.stop()

// The policy benchmark (issue 6): the generated policy against the same without (select ...).
if (!args.has('--no-policy')) {
  const { runPolicyBench } = await import('./policy.mjs')
  const policy = await runPolicyBench({ json, rows: quick ? 100_000 : 1_000_000, rounds: quick ? 3 : 7 })
  if (json) console.log(JSON.stringify({ policy }, null, 2))
}
