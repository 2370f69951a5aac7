// Side-by-side benchmarks of pg-tenant against raw pg and the patterns it replaces, in one
// process, on one pool, against one embedded PostgreSQL (or DATABASE_URL, a superuser URL).
//
//   npm run bench            a table for humans
//   npm run bench -- --json  the same results as JSON
//   npm run bench -- --quick fewer rounds, shorter runs (for a smoke test)
//
// Each variant runs for a fixed time with a fixed number of operations in flight; variants are
// interleaved round by round so drift in the machine hits all of them alike; the median of the
// rounds is reported, with its ratio to raw pg running the same statements.
import os from 'node:os'
import pg from 'pg'
import { createTenantPool } from '../dist/index.js'
import { startEmbeddedPostgres } from '../scripts/embedded-postgres.mjs'

const args = new Set(process.argv.slice(2))
const json = args.has('--json')
const quick = args.has('--quick')
const ROUNDS = quick ? 2 : 5
const MILLIS = quick ? 300 : 1000
const POOL_SIZE = Number(process.env.BENCH_POOL_SIZE ?? 8)
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 32)
const log = (...a) => {
  if (!json) console.log(...a)
}

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
const pool = new pg.Pool({ connectionString: appUrl.toString(), max: POOL_SIZE })
pool.on('error', () => undefined)
// Raw pg gets the same RLS work and the same one-row answers: its connections carry a tenant set
// once, at connect time, and it asks only for that tenant's rows.
const rawPool = new pg.Pool({ connectionString: appUrl.toString(), max: POOL_SIZE, options: '-c app.tenant_id=org_1' })
// The floor's own pool: its prepared statement is not pg-tenant's.
const floorPool = new pg.Pool({ connectionString: appUrl.toString(), max: POOL_SIZE })
floorPool.on('error', () => undefined)
const tenants = createTenantPool(pool)
const roles = createTenantPool(pool, { roles: [/^bench_sales_[0-9]+$/] })
const sessions = createTenantPool(pool, { scope: 'session' })
// The release canary: one more round trip per checked release.
const checked = createTenantPool(pool, { verifyRelease: true })
const sampled = createTenantPool(pool, { verifyRelease: 0.01 })

const POINT = 'select id, kind from events where id = $1'
let n = 0
// Every lookup finds exactly one row: ids are chosen within the tenant that runs them.
const nextId = () => (n++ % 1000) * 10 + 1 // rows of org_1, for raw pg
let current = 0
const pickTenant = () => {
  current = (current + 1) % 10
  return `org_${current}`
}
const idOf = (tenant) => (n++ % 1000) * 10 + Number(tenant.slice(4)) + (tenant === 'org_0' ? 10 : 0)
const tenantOf = (count) => (count === 10 ? pickTenant() : `org_${n % count}`)

async function naive(tenant) {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await client.query(`select set_config('app.tenant_id', $1, true)`, [tenant])
    await client.query(POINT, [idOf(tenant)])
    await client.query('COMMIT')
  } finally {
    client.release()
  }
}

async function sessionSet(tenant) {
  const client = await pool.connect()
  try {
    await client.query(`select set_config('app.tenant_id', $1, false)`, [tenant])
    await client.query(POINT, [idOf(tenant)])
    await client.query('RESET app.tenant_id')
  } finally {
    client.release()
  }
}

async function setRole(role) {
  const client = await pool.connect()
  try {
    await client.query(`SET ROLE ${client.escapeIdentifier(role)}`)
    await client.query('select id from clients where id = $1', [nextId()])
    await client.query('RESET ROLE')
  } finally {
    client.release()
  }
}

// The floor of a tenant-scoped query in one round trip: a minimal hand-written submittable that
// binds the tenant's set_config (prepared once per connection) and runs the statement with one
// Sync, with none of pg-tenant's checks, scopes or release decisions. What still separates it from
// raw pg is the server's work on the extra statement.
const Query = pg.Client.Query
const SET = 'select set_config($1, $2, true)'
class OneTrip {
  constructor(tenant, text, values) {
    this.tenant = tenant
    this.completes = 0
    this.inner = new Query(text, values)
    this.done = new Promise((resolve, reject) => {
      this.inner.callback = (err, result) => (err ? reject(err) : resolve(result))
    })
  }
  get _result() {
    return this.inner._result
  }
  submit(connection) {
    connection.stream.cork?.()
    if (!connection.parsedStatements.bench_set) {
      connection.parse({ text: SET, name: 'bench_set' })
      connection.parsedStatements.bench_set = SET
    }
    connection.bind({ statement: 'bench_set', values: ['app.tenant_id', this.tenant] })
    connection.execute({})
    const refused = this.inner.submit(connection)
    connection.stream.uncork?.()
    return refused
  }
  handleRowDescription(m) { this.inner.handleRowDescription(m) }
  handleDataRow(m) { if (this.completes > 0) this.inner.handleDataRow(m) }
  handleCommandComplete(m, c) { if (this.completes++ > 0) this.inner.handleCommandComplete(m, c) }
  handleEmptyQuery(c) { this.inner.handleEmptyQuery(c) }
  handleError(e, c) { this.inner.handleError(e, c) }
  handleReadyForQuery(c) { this.inner.handleReadyForQuery(c) }
  handlePortalSuspended(c) { this.inner.handlePortalSuspended(c) }
}
const oneTrip = (tenant) =>
  new Promise((resolve, reject) => {
    floorPool.connect((err, client, release) => {
      if (err) return reject(err)
      const q = new OneTrip(tenant, POINT, [idOf(tenant)])
      client.query(q)
      q.done.then(
        (r) => {
          release()
          resolve(r)
        },
        (e) => {
          release(e)
          reject(e)
        },
      )
    })
  })

const variants = {
  'raw pg: pool.query (1 statement)': () => rawPool.query(POINT, [nextId()]),
  'floor: hand-written 1-trip set_config + query': () => oneTrip(tenantOf(10)),
  'naive: BEGIN, set_config, query, COMMIT': () => naive(tenantOf(10)),
  'session: set_config, query, RESET': () => sessionSet(tenantOf(10)),
  'SET ROLE, query, RESET ROLE (seed 000)': () => setRole(`bench_sales_${(n % 10) + 1}`),
  'pg-tenant runWithTenant + 1 query': () => {
    const t = tenantOf(10)
    return tenants.runWithTenant(t, () => tenants.query(POINT, [idOf(t)]))
  },
  'pg-tenant runWithTenant + 1 query, verifyRelease': () => {
    const t = tenantOf(10)
    return checked.runWithTenant(t, () => checked.query(POINT, [idOf(t)]))
  },
  'pg-tenant runWithTenant + 1 query, verifyRelease 1%': () => {
    const t = tenantOf(10)
    return sampled.runWithTenant(t, () => sampled.query(POINT, [idOf(t)]))
  },
  'pg-tenant withTenant, 1 query': () => {
    const t = tenantOf(10)
    return tenants.withTenant(t, () => tenants.query(POINT, [idOf(t)]))
  },
  'pg-tenant scope session, 1 query': () => {
    const t = tenantOf(10)
    return sessions.withTenant(t, () => sessions.query(POINT, [idOf(t)]))
  },
  'raw pg: 3 statements, each pool.query': async () => {
    await rawPool.query(POINT, [nextId()])
    await rawPool.query(POINT, [nextId()])
    await rawPool.query(POINT, [nextId()])
  },
  'pg-tenant withTenant, 3 queries': () => {
    const t = tenantOf(10)
    return tenants.withTenant(t, async () => {
      await tenants.query(POINT, [idOf(t)])
      await tenants.query(POINT, [idOf(t)])
      await tenants.query(POINT, [idOf(t)])
    })
  },
  'pg-tenant runWithTenant, 10 tenants': () => {
    const t = tenantOf(10)
    return tenants.runWithTenant(t, () => tenants.query(POINT, [idOf(t)]))
  },
  'pg-tenant runWithTenant, 100,000 tenants': () => {
    // Tenants org_0 .. org_99999: the rows of the first ten answer, the others find none.
    const t = tenantOf(100000)
    return tenants.runWithTenant(t, () => tenants.query(POINT, [nextId()]))
  },
  'pg-tenant role model, 10 roles': () => {
    const role = `bench_sales_${(n % 10) + 1}`
    return roles.runWithTenant({ role }, () => roles.query('select id from clients where id = $1', [nextId()]))
  },
  [`pg-tenant role model, ${ROLE_COUNT.toLocaleString('en')} roles`]: () => {
    const role = `bench_sales_${(n % ROLE_COUNT) + 1}`
    return roles.runWithTenant({ role }, () => roles.query('select id from clients where id = $1', [nextId()]))
  },
}

// What each variant is compared with: raw pg running the same statements.
const baselineOf = (name) =>
  name.includes('3 queries') || name.includes('3 statements') ? 'raw pg: 3 statements, each pool.query' : 'raw pg: pool.query (1 statement)'

async function measure(fn) {
  const until = performance.now() + MILLIS
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

log(`pg-tenant benchmark: PostgreSQL ${version}, Node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}`)
log(`pool ${POOL_SIZE}, ${IN_FLIGHT} operations in flight, ${ROUNDS} rounds of ${MILLIS} ms, median ops/s\n`)

const names = Object.keys(variants)
for (const name of names) await measure(variants[name]) // warm every path once
const samples = Object.fromEntries(names.map((name) => [name, []]))
for (let round = 0; round < ROUNDS; round++) {
  const order = names.map((_, i) => names[(i + round) % names.length])
  for (const name of order) samples[name].push(await measure(variants[name]))
}
const results = names.map((name) => {
  const opsPerSecond = median(samples[name])
  const baseline = median(samples[baselineOf(name)])
  return { name, opsPerSecond: Math.round(opsPerSecond), ratio: Number((opsPerSecond / baseline).toFixed(2)), baseline: baselineOf(name) }
})

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
        tenants.withTenant(`org_${k % 100000}`, () => (k % 100 === 0 ? tenants.query(POINT, [nextId()]) : k)),
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

const targets = {
  'runWithTenant single query >= 0.9x raw': results.find((r) => r.name === 'pg-tenant runWithTenant + 1 query').ratio >= 0.9,
  'withTenant 3 queries >= 0.7x raw (same 3 statements)': results.find((r) => r.name === 'pg-tenant withTenant, 3 queries').ratio >= 0.7,
  'heap growth after the scopes < 5 MB': growth !== undefined && growth < 5 * 1024 * 1024,
}

if (json) {
  console.log(
    JSON.stringify(
      { postgres: version, node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, poolSize: POOL_SIZE, inFlight: IN_FLIGHT, rounds: ROUNDS, millis: MILLIS, results, heap: { scopes: SCOPES, growthBytes: growth }, targets },
      null,
      2,
    ),
  )
} else {
  const width = Math.max(...names.map((x) => x.length))
  console.log(`${'variant'.padEnd(width)}  ${'ops/s'.padStart(8)}  ratio`)
  for (const r of results) {
    const vs = r.baseline.includes('3 statements') && !r.name.startsWith('raw') ? ' (vs raw 3 statements)' : ''
    console.log(`${r.name.padEnd(width)}  ${String(r.opsPerSecond).padStart(8)}  ${r.ratio.toFixed(2)}x${vs}`)
  }
  console.log(
    `\nheap growth after ${SCOPES.toLocaleString('en')} scopes: ${growth === undefined ? 'n/a (run node with --expose-gc)' : `${(growth / 1024 / 1024).toFixed(2)} MB`}`,
  )
  console.log('\ntargets:')
  for (const [name, ok] of Object.entries(targets)) console.log(`  ${ok ? 'met    ' : 'MISSED '} ${name}`)
}

await pool.end()
await rawPool.end()
await floorPool.end()
await superDb.query(`drop owned by bench_app`).catch(() => undefined)
await superDb.end()
await server.stop()

// The policy benchmark (issue 6): the generated policy against the same without (select ...).
if (!args.has('--no-policy')) {
  const { runPolicyBench } = await import('./policy.mjs')
  const policy = await runPolicyBench({ json, rows: quick ? 100_000 : 1_000_000, rounds: quick ? 3 : 7 })
  if (json) console.log(JSON.stringify({ policy }, null, 2))
}
