/**
 * `pg-tenant probe`: the command line over {@link runProbe}. It parses its own arguments and maps
 * every failure to an exit code (2: bad usage, a malformed URL, an unreachable database), so that
 * src/cli.ts only dispatches to it.
 */
import { parseArgs } from 'node:util'
import { InvalidOptionsError, TenantPoolError } from '../errors.js'
import type { Tenant } from '../tenant.js'
import { formatProbe, probeExitCode } from './format.js'
import { messageOf } from './read.js'
import { runProbe } from './run.js'
import { validateConnectionUrl } from './url.js'

/** Where the command writes, and its environment (as src/cli.ts's CliIo). */
export interface ProbeIo {
  readonly stdout: (text: string) => void
  readonly stderr: (text: string) => void
  readonly env: Readonly<Record<string, string | undefined>>
}

/** `pg-tenant probe --help`. */
export const PROBE_HELP = `Usage: pg-tenant probe --tenant <id> --tenant <id> [options]
       pg-tenant probe --role <role> --role <role> [options]

Proves tenant isolation by acting on the database: connects as the application's login role and,
through pg-tenant, reads every table as no tenant and as each tenant, and tries UPDATE and DELETE
across tenants inside transactions that are always rolled back (UPDATE and DELETE triggers fire
inside them). Use a test or staging database with rows for each tenant.

Options:
  --url <conn>           connection string of the login role (default: DATABASE_URL)
  --tenant <id>          a tenant id, written to --setting; at least two
  --role <role>          a role per tenant (SET ROLE, through pg-tenant's allow-list); at least
                         two; with --tenant too, the n-th role goes with the n-th tenant id
  --setting <name>       the setting tenant ids are written to (default: app.tenant_id)
  --schema <name>        a schema to probe; repeat for several (default: all but pg_* and
                         information_schema)
  --shared <schema.tbl>  a table every tenant may read (a lookup table): it must only not be
                         writable by tenants; repeat for several
  --max-rows <n>         row identities compared per tenant and table (default: 10000)
  --json                 print one JSON entry per table
  -h, --help             show this help

Exit codes: 0 every table checked passed (tables no tenant can read are listed as skipped),
1 a table leaks or could not be checked, 2 bad usage, an unreachable database, or no table checked.

Example:
  pg-tenant probe --url postgres://app_user@localhost/app --tenant org_a --tenant org_b
`

/** Bad usage: printed with a pointer to --help, exit code 2. Never leaves probeCommand. */
class Usage extends InvalidOptionsError {}

/** Runs `pg-tenant probe` with `args`; resolves with the exit code. */
export async function probeCommand(args: readonly string[], io: ProbeIo): Promise<number> {
  try {
    return await run(args, io)
  } catch (err) {
    if (err instanceof Usage) {
      io.stderr(`pg-tenant: ${err.message}\nRun 'pg-tenant probe --help' for usage.\n`)
      return 2
    }
    if (err instanceof TenantPoolError) {
      io.stderr(`pg-tenant: ${err.message}\n`)
      return 2
    }
    io.stderr(`pg-tenant: the probe could not run: ${describe(err)}\n`)
    return 2
  }
}

async function run(args: readonly string[], io: ProbeIo): Promise<number> {
  let values: Record<string, string | string[] | boolean | undefined>
  try {
    const parsed = parseArgs({
      args: [...args],
      options: {
        url: { type: 'string' },
        tenant: { type: 'string', multiple: true },
        role: { type: 'string', multiple: true },
        setting: { type: 'string' },
        schema: { type: 'string', multiple: true },
        shared: { type: 'string', multiple: true },
        'max-rows': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    })
    if (parsed.positionals.length > 0) throw new Usage(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`)
    values = parsed.values
  } catch (err) {
    if (err instanceof Usage) throw err
    throw new Usage((err as Error).message.replace(/\. To specify.*$/s, '').replace(/\.$/, ''))
  }
  if (values.help === true) {
    io.stdout(PROBE_HELP)
    return 0
  }
  const ids = (values.tenant as string[] | undefined) ?? []
  const roles = (values.role as string[] | undefined) ?? []
  let tenants: Tenant[]
  if (roles.length === 0) tenants = ids
  else if (ids.length === 0) tenants = roles.map((role) => ({ role }))
  else if (ids.length === roles.length) tenants = ids.map((id, i) => ({ id, role: roles[i]! }))
  else throw new Usage('with both --tenant and --role, give as many of each (the n-th role goes with the n-th tenant)')
  if (tenants.length < 2) throw new Usage('give at least two tenants (--tenant <id> or --role <role>, repeated): isolation is between tenants')

  const url = (values.url as string | undefined) ?? io.env.DATABASE_URL
  if (url === undefined || url === '') throw new Usage('no database: pass --url <connection string> or set DATABASE_URL')
  try {
    validateConnectionUrl(url, values.url === undefined ? 'DATABASE_URL' : '--url')
  } catch (err) {
    throw new Usage((err as Error).message)
  }
  let maxRows: number | undefined
  if (values['max-rows'] !== undefined) {
    maxRows = Number(values['max-rows'])
    if (!Number.isSafeInteger(maxRows) || maxRows < 1) throw new Usage('--max-rows must be a positive integer')
  }
  let entries
  try {
    entries = await runProbe({
      connectionString: url,
      tenants,
      roles,
      schemas: values.schema as string[] | undefined,
      setting: values.setting as string | undefined,
      shared: values.shared as string[] | undefined,
      ...(maxRows === undefined ? {} : { maxRows }),
    })
  } catch (err) {
    if (err instanceof TenantPoolError) throw err
    io.stderr(`pg-tenant: the probe could not run on ${describeUrl(url)}: ${describe(err)}\n`)
    return 2
  }
  io.stdout(values.json === true ? `${JSON.stringify(entries, null, 2)}\n` : formatProbe(entries))
  const code = probeExitCode(entries)
  if (code === 2) io.stderr('pg-tenant: no table was checked: no tenant can read a table of the schemas probed\n')
  return code
}

/** host:port/database, without credentials. */
function describeUrl(url: string): string {
  try {
    const parsed = new URL(url)
    const database = decodeURIComponent(parsed.pathname.replace(/^\//, ''))
    return `${parsed.hostname || 'localhost'}${parsed.port ? `:${parsed.port}` : ''}${database ? `/${database}` : ''}`
  } catch {
    return 'the database'
  }
}

function describe(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(describe).join('; ')
  if (err instanceof Error) return messageOf(err) || ((err as { code?: string }).code ?? err.name)
  return String(err)
}
