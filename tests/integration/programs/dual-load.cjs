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

  // The Express adapter, loaded by require (its own CJS copy of shared modules), driving the pool
  // created through import: the tenant it binds must be the one the ESM pool sees.
  const express = require('pg-tenant/express')
  out.adapterTenant = await new Promise((resolve, reject) => {
    const middleware = express.tenantMiddleware(dbEsm, { resolve: () => 'org_adapter' })
    middleware({ headers: {} }, {}, (err) => {
      if (err) return reject(err)
      dbEsm
        .query("select current_setting('app.tenant_id') as tenant")
        .then((r) => resolve(r.rows[0].tenant), reject)
    })
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

  // diagnostics_channel names are process-global: one subscriber hears both copies, and scope ids
  // do not collide between them.
  const diagnostics = require('node:diagnostics_channel')
  const starts = []
  const onStart = (message) => starts.push(message)
  diagnostics.subscribe(esm.diagnosticsChannels.scopeStart, onStart)
  await dbEsm.withTenant('org_dc_esm', () => dbEsm.query('select 1'))
  await dbCjs.withTenant('org_dc_cjs', () => dbCjs.query('select 1'))
  diagnostics.unsubscribe(esm.diagnosticsChannels.scopeStart, onStart)
  out.channelHeardBothCopies = starts.map((m) => m.tenant).join(',')
  out.scopeIdsDistinct = starts.length === 2 && starts[0].scopeId !== starts[1].scopeId
  await dbEsm.end()
  await dbCjs.end()
  console.log(JSON.stringify(out))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
