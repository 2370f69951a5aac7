// Runs probeIsolation from the built package by name, as users get it: `pg-tenant/testing` by
// require (dist/testing.cjs) and by import (dist/testing.js), with a pg.Pool and with a connection
// string. Prints what each returned, as JSON. Env: APP_URL, PROBE_SCHEMA, PROBE_TENANTS (comma list).
const pg = require('pg')
const cjs = require('pg-tenant/testing')

async function main() {
  const tenants = process.env.PROBE_TENANTS.split(',')
  const schemas = [process.env.PROBE_SCHEMA]
  const pool = new pg.Pool({ connectionString: process.env.APP_URL, max: 2 })
  const summary = (entries) => entries.map((e) => `${e.table}:${e.status}`).join(',')
  const out = {}
  try {
    out.cjsWithPool = summary(await cjs.probeIsolation({ pool, tenants, schemas }))
    out.poolStillUsable = (await pool.query('select 1 as one')).rows[0].one === 1
  } finally {
    await pool.end()
  }
  const esm = await import('pg-tenant/testing')
  const entries = await esm.probeIsolation({ connectionString: process.env.APP_URL, tenants, schemas })
  out.esmWithUrl = summary(entries)
  out.exitCode = esm.probeExitCode(entries)
  out.text = esm.formatProbe(entries).split('\n')[0]
  const refused = await esm.probeIsolation({ connectionString: process.env.APP_URL, tenants: [tenants[0]] }).catch((e) => e)
  out.oneTenant = `${refused.name}:${refused.code}`
  out.sameExports = typeof cjs.probeIsolation === 'function' && typeof esm.probeIsolation === 'function'
  process.stdout.write(JSON.stringify(out))
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err))
  process.exitCode = 1
})
