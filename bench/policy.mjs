#!/usr/bin/env node
/**
 * What the `(SELECT ...)` wrapper in generated policies buys.
 *
 * On a table of 1,000,000 rows (1,000 tenants), the policy tenantPolicySql() generates
 *     org_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::bigint)
 * is timed against the same policy without the wrapper
 *     org_id = nullif(current_setting('app.tenant_id', true), '')::bigint
 * as a non-owner role with a tenant set, in two scenarios:
 *   - "seq scan": no index on org_id, so the policy is a filter evaluated on every row. Without
 *     the wrapper, current_setting(), nullif and the cast run once per row; with it, once per
 *     statement (an InitPlan).
 *   - "index": an index on org_id. Both forms are then index conditions computed once, so the
 *     wrapper should make no difference: this is the control.
 * Each round times one query per variant (order alternating), after one warm-up each; the report
 * gives medians and the ratio unwrapped / generated. It also prints the EXPLAIN that shows the
 * InitPlan.
 *
 * Server: DATABASE_URL (a superuser; a scratch database and role are created and dropped), or
 * a throwaway embedded PostgreSQL. Uses the built package: `npm run bench:policy` builds first.
 *
 *   node bench/policy.mjs [--json] [--rows N] [--rounds N]
 *
 * From another script: `const results = await runPolicyBench({ json: true })`.
 */
import { startEmbeddedPostgres } from '../scripts/embedded-postgres.mjs'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import { performance } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'

const SETTING = 'app.tenant_id'
const TENANTS = 1000

/**
 * Runs the benchmark and returns its results.
 *
 * @param {object} [options]
 * @param {boolean} [options.json] - print nothing (the caller prints the returned results);
 *   otherwise a readable report goes to stdout
 * @param {string} [options.url] - a superuser connection string; default DATABASE_URL, else an
 *   embedded PostgreSQL is started and stopped
 * @param {number} [options.rows] - table size, default 1,000,000
 * @param {number} [options.rounds] - timed queries per variant and scenario, default 7
 */
export async function runPolicyBench({
  json = false,
  url = process.env.DATABASE_URL,
  rows = 1_000_000,
  rounds = 7,
} = {}) {
  const say = json ? () => {} : (text) => process.stdout.write(`${text}\n`)
  const { tenantPolicySql } = await loadPackage()
  const started = performance.now()
  const server = url ? { url, stop: async () => {} } : await startEmbeddedPostgres()
  const suffix = randomBytes(4).toString('hex')
  const database = `pgt_bench_${suffix}`
  const role = `pgt_bench_app_${suffix}`
  const admin = new pg.Client({ connectionString: server.url })
  await admin.connect()
  let client
  try {
    await admin.query(`create database ${database}`)
    await admin.query(`create role ${role} nologin nosuperuser nobypassrls`)
    const dbUrl = new URL(server.url)
    dbUrl.pathname = `/${database}`
    client = new pg.Client({ connectionString: dbUrl.toString() })
    await client.connect()
    const { rows: [info] } = await client.query(
      `select current_setting('server_version') as version, current_setting('max_parallel_workers_per_gather') as workers`,
    )
    say(`PostgreSQL ${info.version}; ${rows.toLocaleString('en')} rows, ${TENANTS} tenants, ${rounds} rounds`)

    const load = performance.now()
    await client.query(`create table events (
        id bigint generated always as identity primary key,
        org_id bigint not null,
        payload text not null)`)
    await client.query(
      `insert into events (org_id, payload)
       select (g % ${TENANTS}) + 1, md5(g::text) from generate_series(1, $1::int) g`,
      [rows],
    )
    await client.query(`grant select on events to ${role}`)
    await client.query(`vacuum analyze events`)
    say(`loaded in ${((performance.now() - load) / 1000).toFixed(1)} s`)

    // The generated policy, and the same policy without the (SELECT ...) wrapper.
    const generated = tenantPolicySql({ table: 'events', column: 'org_id', type: 'bigint', setting: SETTING })
    const unwrapped = generated.replaceAll(
      `(SELECT nullif(current_setting('${SETTING}', true), '')::bigint)`,
      `nullif(current_setting('${SETTING}', true), '')::bigint`,
    )
    if (unwrapped === generated) throw new Error('the generated policy no longer has the expected shape')
    const variants = { generated, unwrapped }
    const apply = async (name) => {
      await client.query(`drop policy if exists tenant_isolation on events`)
      await client.query(variants[name])
    }
    const tenant = String(Math.floor(TENANTS / 2))
    const QUERY = 'select count(*)::int as n from events'
    // One statement as the tenant, as the application would run it: non-owner role, SET LOCAL.
    const asTenant = async (text) => {
      await client.query('begin')
      try {
        await client.query(`set local role ${role}`)
        await client.query(`select set_config($1, $2, true)`, [SETTING, tenant])
        const t0 = performance.now()
        const result = await client.query(text)
        return { ms: performance.now() - t0, rows: result.rows }
      } finally {
        await client.query('rollback')
      }
    }

    const scenarios = []
    let explain = ''
    let explainUnwrapped = ''
    for (const scenario of ['seq scan', 'index']) {
      if (scenario === 'index') {
        await client.query(`create index events_org_id on events (org_id)`)
        await client.query(`analyze events`)
      }
      const samples = { generated: [], unwrapped: [] }
      for (const name of ['generated', 'unwrapped']) {
        await apply(name)
        const { rows: [r] } = (await asTenant(QUERY))
        if (r.n !== rows / TENANTS) throw new Error(`expected ${rows / TENANTS} rows for one tenant, got ${r.n}`)
      }
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? ['generated', 'unwrapped'] : ['unwrapped', 'generated']
        for (const name of order) {
          await apply(name)
          await asTenant(QUERY) // warm-up: plan, caches
          samples[name].push((await asTenant(QUERY)).ms)
        }
      }
      const result = {
        scenario,
        generatedMs: round2(median(samples.generated)),
        unwrappedMs: round2(median(samples.unwrapped)),
        ratio: round2(median(samples.unwrapped) / median(samples.generated)),
        samples: { generated: samples.generated.map(round2), unwrapped: samples.unwrapped.map(round2) },
      }
      scenarios.push(result)
      if (scenario === 'seq scan') {
        await apply('generated')
        explain = planText(await asTenant(`explain (analyze, costs off, timing off, summary off) ${QUERY}`))
        await apply('unwrapped')
        explainUnwrapped = planText(await asTenant(`explain (analyze, costs off, timing off, summary off) ${QUERY}`))
      }
    }

    const results = {
      name: 'policy-initplan',
      server: info.version,
      parallelWorkersPerGather: Number(info.workers),
      rows,
      tenants: TENANTS,
      rounds,
      query: QUERY,
      policy: { generated, unwrapped },
      scenarios,
      initPlan: /InitPlan/.test(explain),
      explain,
      explainUnwrapped,
      seconds: round2((performance.now() - started) / 1000),
    }
    say('')
    say('scenario    generated (median)   without (SELECT ...)   ratio')
    for (const s of scenarios) {
      say(
        `${s.scenario.padEnd(10)}  ${`${s.generatedMs.toFixed(1)} ms`.padStart(17)}   ${`${s.unwrappedMs.toFixed(1)} ms`.padStart(20)}   ${s.ratio.toFixed(2)}x`,
      )
    }
    say('')
    say('ratio = time without the wrapper / time of the generated policy (above 1: the wrapper is faster)')
    say('')
    say(`EXPLAIN ANALYZE, generated policy (InitPlan ${results.initPlan ? 'present' : 'MISSING'}):`)
    say(indent(explain))
    say('')
    say('EXPLAIN ANALYZE, without the wrapper (the setting is read in the per-row filter):')
    say(indent(explainUnwrapped))
    say('')
    say(`done in ${results.seconds} s`)
    return results
  } finally {
    await client?.end().catch(() => {})
    await admin.query(`drop database if exists ${database} with (force)`).catch(() => {})
    await admin.query(`drop role if exists ${role}`).catch(() => {})
    await admin.end().catch(() => {})
    await server.stop()
  }
}

function planText(result) {
  return result.rows.map((r) => r['QUERY PLAN']).join('\n')
}

function indent(text) {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n')
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function round2(n) {
  return Math.round(n * 100) / 100
}

async function loadPackage() {
  const dist = new URL('../dist/index.js', import.meta.url)
  if (!fs.existsSync(fileURLToPath(dist))) {
    throw new Error('dist/ is missing: run `npm run build` (or `npm run bench:policy`, which builds)')
  }
  return import(dist.href)
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean' },
      rows: { type: 'string' },
      rounds: { type: 'string' },
    },
  })
  const options = { json: values.json === true }
  if (values.rows !== undefined) options.rows = Number(values.rows)
  if (values.rounds !== undefined) options.rounds = Number(values.rounds)
  runPolicyBench(options).then(
    (results) => {
      if (options.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
    },
    (err) => {
      process.stderr.write(`bench/policy: ${err instanceof Error ? err.stack : String(err)}\n`)
      process.exitCode = 1
    },
  )
}
