// Loads the built package twice in one process, as an app with mixed dependencies would: once
// through `require` (dist/index.cjs) and once through `import` (dist/index.js), both by package
// name, resolved through package.json "exports". Prints what it observed as JSON.
const cjs = require('pg-tenant')
const pg = require('pg')

async function main() {
  const esm = await import('pg-tenant')
  const out = { node: process.version }
  out.distinctModules = esm.createTenantPool !== cjs.createTenantPool
  out.sameStore = esm.tenantStore() === cjs.tenantStore()

  const dbEsm = esm.createTenantPool(new pg.Pool({ connectionString: process.env.APP_URL, max: 1 }))
  out.bindingSeenByCjsCopy = await dbEsm.withTenant('org_dual', async () => {
    await dbEsm.query('select 1')
    return cjs.tenantStore().getStore() !== undefined
  })

  const dbCjs = cjs.createTenantPool(new pg.Pool({ connectionString: process.env.APP_URL, max: 1 }))
  const { rows } = await dbCjs.runWithTenant('org_dual', () =>
    dbCjs.query("select current_setting('app.tenant_id') as tenant"),
  )
  out.cjsTenant = rows[0].tenant
  const failure = await dbCjs.query('select 1').catch((e) => e)
  out.cjsErrorIsEsmInstance = failure instanceof esm.TenantRequiredError
  out.cjsErrorIsEsmBase = failure instanceof esm.TenantPoolError
  out.cjsErrorCode = failure.code
  await dbEsm.end()
  await dbCjs.end()
  console.log(JSON.stringify(out))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
