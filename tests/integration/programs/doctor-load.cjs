// Runs the RLS doctor from the built package, as users get it, by package name through
// package.json "exports": db.doctor() from the CJS build (which must load dist/doctor.cjs only
// on first use) and from the ESM build, and checkRls from `pg-tenant/doctor` both ways.
// Prints what it observed as JSON.
const path = require('node:path')
const cjs = require('pg-tenant')
const pg = require('pg')

const loaded = (file) => Object.keys(require.cache).some((f) => path.basename(f) === file)
// A clean schema, and a finding that depends on nothing in it: scope 'session' behind a
// declared transaction pooler.
const options = { tenantColumn: ['org_id', 'salesperson'], schemas: ['public'], pgbouncer: 'transaction' }
const codes = (findings) => findings.map((f) => `${f.severity}:${f.code}`).join(',')

async function main() {
  const out = { node: process.version }
  out.cjsDoctorLoadedBeforeUse = loaded('doctor.cjs')
  const pools = []
  const pool = () => {
    const p = new pg.Pool({ connectionString: process.env.APP_URL, max: 1 })
    pools.push(p)
    return p
  }

  const dbCjs = cjs.createTenantPool(pool(), { scope: 'session' })
  out.cjsDbDoctor = codes(await dbCjs.doctor(options))
  out.cjsDoctorLoadedAfterUse = loaded('doctor.cjs')
  const failure = await dbCjs.doctor({ tenantColumn: [] }).catch((e) => e)

  const esm = await import('pg-tenant')
  out.cjsDoctorErrorIsEsmInstance = failure instanceof esm.InvalidOptionsError
  out.cjsDoctorErrorCode = failure.code
  const dbEsm = esm.createTenantPool(pool(), { scope: 'session' })
  out.esmDbDoctor = codes(await dbEsm.doctor(options))
  out.coreExportsCheckRls = 'checkRls' in cjs || 'checkRls' in esm

  const doctorCjs = require('pg-tenant/doctor')
  const doctorEsm = await import('pg-tenant/doctor')
  out.cjsCheckRls = codes(await doctorCjs.checkRls(pool(), { ...options, scope: 'session' }))
  out.esmCheckRls = codes(await doctorEsm.checkRls(pool(), { ...options, scope: 'session' }))
  out.doctorExports = [Object.keys(doctorCjs).sort().join(','), Object.keys(doctorEsm).sort().join(',')]
  out.doctorRefusesTenantPool = await doctorEsm
    .checkRls(dbEsm, options)
    .then(() => 'resolved', (e) => e instanceof cjs.InvalidOptionsError && /db\.doctor\(\)/.test(e.message))

  await Promise.all(pools.map((p) => p.end()))
  console.log(JSON.stringify(out))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
