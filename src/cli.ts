#!/usr/bin/env node
/**
 * The `pg-tenant` command line: `pg-tenant doctor` runs the RLS doctor against a database,
 * `pg-tenant policy` prints policy SQL. Exit codes: 0 fine, 1 the doctor found an error (a
 * selection that matched no tenant table is one: NOTHING_CHECKED), 2 the command could not run
 * (bad usage, invalid names, a malformed connection URL, an unreachable database). Every user
 * error is one line on stderr, never a stack trace.
 *
 * Built as ESM only (dist/cli.js). `pg` is loaded at run time, from the user's installation (it is
 * a peer dependency), and only by `doctor`.
 */
import { realpathSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { checkRls, type CheckRlsOptions, type Finding } from './doctor/index.js'
import { describeDatabaseUrl, parseDatabaseUrl } from './cli/database-url.js'
import { UsageError } from './cli/usage-error.js'
import { TenantPoolError } from './errors.js'
import { probeCommand } from './probe/command.js'
import {
  dropRolePolicySql,
  dropTenantPolicySql,
  rolePolicySql,
  tenantPolicySql,
  type TenantColumnType,
} from './sql/index.js'

/** Where the CLI writes, and what it reads from its environment: injectable for tests. */
export interface CliIo {
  readonly stdout: (text: string) => void
  readonly stderr: (text: string) => void
  readonly env: Readonly<Record<string, string | undefined>>
  readonly columns: number | undefined
}

const MAIN_HELP = `Usage: pg-tenant <command> [options]

Commands:
  doctor    check that PostgreSQL row-level security really keeps tenants apart
  policy    print the SQL that puts a table under tenant isolation (or removes it)
  probe     prove isolation by acting as each tenant (reads, and writes that are rolled back)

Options:
  -h, --help       show this help; pg-tenant <command> --help shows a command's options
  -v, --version    print the version

Exit codes: 0 fine, 1 the doctor found an error (or checked nothing), 2 the command could not
run (bad usage, a malformed connection URL, an unreachable database).
`

const DOCTOR_HELP = `Usage: pg-tenant doctor --column <name> [options]

Checks the database as the role the connection logs in as (or --login-role) and prints what would
let one tenant see or change another tenant's rows. Reads catalogs only; changes nothing.

Options:
  --url <conn>           connection string (default: the DATABASE_URL environment variable)
  --column <name>        the tenant column, marking tenant tables; repeat for several (required)
  --setting <name>       the setting tenant ids are written to (default: app.tenant_id)
  --schema <name>        a schema to check; repeat for several (default: all but pg_* and
                         information_schema)
  --login-role <name>    check this role instead of the one connected (e.g. when connecting as
                         an administrator to check the application's role)
  --allow-role <role>    an entry of the pool's roles allow-list; /regexp/ for a pattern;
                         repeat for several
  --scope <scope>        the pool's scope: transaction (default) or session
  --pgbouncer <mode>     how the application connects: session, transaction or statement
                         (through a pooler in that mode), or none (directly)
  --json                 print the findings as a JSON array
  -h, --help             show this help

Exit codes:
  0  no error found (warnings allowed)
  1  at least one error, including NOTHING_CHECKED: the --column/--schema selection matched no
     tenant table, or a --schema does not exist, so a clean result would prove nothing
  2  the check could not run: bad usage or a malformed --url (nothing was tried), or the
     database could not be reached or refused the login (the message says which)

Example:
  pg-tenant doctor --url postgres://app_user@localhost/app --column org_id --schema public
`

const POLICY_HELP = `Usage: pg-tenant policy --table <name> --column <name> [options]

Prints the SQL that enables and forces row-level security on a table and creates one policy with
USING and WITH CHECK. Run it as the table owner. Names are validated and quoted.

Options:
  --table <name>         the table (required)
  --column <name>        the tenant column (required)
  --type <type>          the column type: text (default), uuid, bigint or integer
  --setting <name>       the setting the tenant id is read from (default: app.tenant_id)
  --schema <name>        the table's schema (default: unqualified, found through search_path)
  --policy-name <name>   the policy name (default: tenant_isolation, or role_isolation)
  --role <name>          a role the policy applies to; repeat for several (default: PUBLIC)
  --current-user         role-per-user model: compare the column with current_user instead
  --undo                 print the SQL that removes the policy and turns RLS off
  -h, --help             show this help

Example:
  pg-tenant policy --table events --column org_id --type uuid
`

/**
 * Runs the command line with `argv` (without `node` and the script) and returns the exit code.
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const [command, ...rest] = argv
    switch (command) {
      case 'doctor':
        return await doctor(rest, io)
      case 'policy':
        return policy(rest, io)
      case 'probe':
        return await probeCommand(rest, io)
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        io[command === undefined ? 'stderr' : 'stdout'](MAIN_HELP)
        return command === undefined ? 2 : 0
      case '-v':
      case '--version':
        io.stdout(`${version()}\n`)
        return 0
      default:
        throw new UsageError(
          command.startsWith('-')
            ? `unknown option ${quote(command)} (options go after the command)`
            : `unknown command ${quote(command)}`,
        )
    }
  } catch (err) {
    if (err instanceof UsageError) {
      const help = err.command === undefined ? 'pg-tenant --help' : `pg-tenant ${err.command} --help`
      io.stderr(`pg-tenant: ${err.message}\nRun '${help}' for usage.\n`)
      return 2
    }
    if (err instanceof TenantPoolError) {
      io.stderr(`pg-tenant: ${err.message}\n`)
      return 2
    }
    io.stderr(`pg-tenant: ${err instanceof Error ? err.message : String(err)}\n`)
    return 2
  }
}

function parse<T extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>>(
  args: readonly string[],
  options: T,
  command: string,
) {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    })
    if (positionals.length > 0) {
      throw new UsageError(`unexpected argument ${quote(positionals[0]!)}`)
    }
    return values as Record<string, string | string[] | boolean | undefined>
  } catch (err) {
    if (err instanceof UsageError) throw usage(err.message, command)
    const code = (err as { code?: string }).code
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      const message = (err as Error).message
        .split('\n')
        .filter((line) => !line.startsWith('To specify'))
        .join('\n')
      throw usage(message.replace(/\. To specify.*$/s, '').replace(/\.$/, ''), command)
    }
    throw err
  }
}

function usage(message: string, command: string): UsageError {
  return new UsageError(message, command)
}

// ---------------------------------------------------------------------------------------------
// pg-tenant doctor
// ---------------------------------------------------------------------------------------------

async function doctor(args: readonly string[], io: CliIo): Promise<number> {
  const values = parse(
    args,
    {
      url: { type: 'string' },
      column: { type: 'string', multiple: true },
      setting: { type: 'string' },
      schema: { type: 'string', multiple: true },
      'login-role': { type: 'string' },
      'allow-role': { type: 'string', multiple: true },
      scope: { type: 'string' },
      pgbouncer: { type: 'string' },
      json: { type: 'boolean' },
    },
    'doctor',
  )
  if (values.help === true) {
    io.stdout(DOCTOR_HELP)
    return 0
  }
  const columns = values.column as string[] | undefined
  if (columns === undefined) throw usage('missing --column <name> (the tenant column)', 'doctor')
  const scope = values.scope as string | undefined
  if (scope !== undefined && scope !== 'transaction' && scope !== 'session') {
    throw usage(`--scope must be transaction or session, got ${quote(scope)}`, 'doctor')
  }
  const pgbouncer = values.pgbouncer as string | undefined
  if (pgbouncer !== undefined && !['session', 'transaction', 'statement', 'none'].includes(pgbouncer)) {
    throw usage(`--pgbouncer must be session, transaction, statement or none, got ${quote(pgbouncer)}`, 'doctor')
  }
  const options: CheckRlsOptions = {
    tenantColumn: columns,
    setting: values.setting as string | undefined,
    schemas: values.schema as string[] | undefined,
    loginRole: values['login-role'] as string | undefined,
    roles: ((values['allow-role'] as string[] | undefined) ?? []).map(toMatcher),
    scope: scope as CheckRlsOptions['scope'],
    pgbouncer: pgbouncer === 'none' ? false : (pgbouncer as CheckRlsOptions['pgbouncer']),
  }
  const given = values.url as string | undefined
  const raw = given ?? io.env.DATABASE_URL
  if (raw === undefined || (given === undefined && raw === '')) {
    throw usage('no database: pass --url <connection string> or set DATABASE_URL', 'doctor')
  }
  // Checked before pg sees it: pg's parser turns almost any string into some host and database.
  const url = parseDatabaseUrl(raw, { source: given === undefined ? 'DATABASE_URL' : '--url', command: 'doctor' })

  const findings = await withClient(raw, url, (client) => checkRls(client, options))
  if (values.json === true) {
    io.stdout(`${JSON.stringify(findings, null, 2)}\n`)
  } else {
    io.stdout(renderFindings(findings, io.columns ?? 100))
  }
  return findings.some((f) => f.severity === 'error') ? 1 : 0
}

/** `/pattern/flags` is a RegExp; anything else is a role name. */
function toMatcher(entry: string): string | RegExp {
  const match = /^\/(.+)\/([a-z]*)$/s.exec(entry)
  if (match === null) return entry
  try {
    return new RegExp(match[1]!, match[2])
  } catch (err) {
    throw usage(`--allow-role ${quote(entry)} is not a valid regular expression: ${(err as Error).message}`, 'doctor')
  }
}

interface ClientLike {
  connect(): Promise<void>
  query(text: string, values?: readonly unknown[]): Promise<{ rows: any[] }>
  end(): Promise<void>
  on(event: 'error', listener: (err: Error) => void): unknown
}

async function withClient<T>(raw: string, url: URL, fn: (client: ClientLike) => Promise<T>): Promise<T> {
  const Client = await loadPgClient()
  const where = describeDatabaseUrl(url)
  let client: ClientLike
  try {
    client = new Client({ connectionString: raw, connectionTimeoutMillis: 10_000 })
  } catch (err) {
    throw new CliFailure(`invalid connection string for ${where}: ${describeError(err)}`)
  }
  client.on('error', () => {}) // a connection lost mid-check surfaces as the query's rejection
  try {
    await client.connect()
  } catch (err) {
    await client.end().catch(() => {})
    throw new CliFailure(`cannot connect to the database at ${where}: ${describeError(err)}`)
  }
  try {
    return await fn(client)
  } catch (err) {
    if (err instanceof TenantPoolError) throw err
    throw new CliFailure(`the check failed on ${where}: ${describeError(err)}`)
  } finally {
    await client.end().catch(() => {})
  }
}

/** The command ran but could not finish (unreachable database, failed query): exit 2. */
class CliFailure extends Error {}

async function loadPgClient(): Promise<new (config: object) => ClientLike> {
  // A variable specifier: resolved at run time from the user's installation, never bundled.
  const specifier = 'pg'
  try {
    const mod = (await import(specifier)) as { default?: { Client?: unknown }; Client?: unknown }
    const Client = mod.default?.Client ?? mod.Client
    if (typeof Client !== 'function') throw new Error('pg has no Client export')
    return Client as new (config: object) => ClientLike
  } catch (err) {
    throw new CliFailure(
      `pg-tenant doctor needs the pg package (npm install pg): ${(err as Error).message}`,
    )
  }
}

function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return err.errors.map((e) => describeError(e)).join('; ')
  }
  if (err instanceof Error) {
    const code = (err as { code?: string }).code
    return err.message || code || err.name
  }
  return String(err)
}

/** The findings as a table: severity, object, then the message and the fix. */
export function renderFindings(findings: readonly Finding[], columns: number): string {
  if (findings.length === 0) {
    return 'No findings: no check failed. (The doctor checks how RLS is set up, not what the policies mean.)\n'
  }
  const width = Math.max(80, Math.min(columns, 160))
  const severityWidth = 8
  const objectWidth = Math.min(34, Math.max(6, ...findings.map((f) => f.object.length)))
  const textWidth = width - severityWidth - objectWidth - 4
  const lines: string[] = []
  const row = (a: string, b: string, c: string) =>
    `${a.padEnd(severityWidth)}  ${b.padEnd(objectWidth)}  ${c}`.trimEnd()
  lines.push(row('SEVERITY', 'OBJECT', 'MESSAGE AND FIX'))
  lines.push(row('-'.repeat(severityWidth), '-'.repeat(objectWidth), '-'.repeat(Math.min(textWidth, 40))))
  for (const f of findings) {
    const text = [
      ...wrap(`${f.code}: ${f.message}`, textWidth),
      'fix:',
      ...f.fix.split('\n').map((line) => `  ${line}`), // SQL is never wrapped: copy it as is
    ]
    const object = wrap(f.object, objectWidth)
    const height = Math.max(text.length, object.length)
    for (let i = 0; i < height; i++) {
      lines.push(row(i === 0 ? f.severity : '', object[i] ?? '', text[i] ?? ''))
    }
    lines.push('')
  }
  const errors = findings.filter((f) => f.severity === 'error').length
  const warnings = findings.length - errors
  lines.push(`${plural(errors, 'error')}, ${plural(warnings, 'warning')}.`)
  return `${lines.join('\n')}\n`
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function wrap(text: string, width: number): string[] {
  const out: string[] = []
  let line = ''
  for (const word of text.split(/\s+/)) {
    if (line === '') line = word
    else if (line.length + 1 + word.length <= width) line += ` ${word}`
    else {
      out.push(line)
      line = word
    }
    while (line.length > width) {
      out.push(line.slice(0, width))
      line = line.slice(width)
    }
  }
  if (line !== '') out.push(line)
  return out
}

// ---------------------------------------------------------------------------------------------
// pg-tenant policy
// ---------------------------------------------------------------------------------------------

function policy(args: readonly string[], io: CliIo): number {
  const values = parse(
    args,
    {
      table: { type: 'string' },
      column: { type: 'string' },
      type: { type: 'string' },
      setting: { type: 'string' },
      schema: { type: 'string' },
      'policy-name': { type: 'string' },
      role: { type: 'string', multiple: true },
      'current-user': { type: 'boolean' },
      undo: { type: 'boolean' },
    },
    'policy',
  )
  if (values.help === true) {
    io.stdout(POLICY_HELP)
    return 0
  }
  const table = values.table as string | undefined
  const column = values.column as string | undefined
  if (table === undefined) throw usage('missing --table <name>', 'policy')
  const type = values.type as string | undefined
  if (type !== undefined && !['text', 'uuid', 'bigint', 'integer'].includes(type)) {
    throw usage(`--type must be text, uuid, bigint or integer, got ${quote(type)}`, 'policy')
  }
  const roleModel = values['current-user'] === true
  if (roleModel && (type !== undefined || values.setting !== undefined)) {
    throw usage('--current-user compares with current_user: --type and --setting do not apply', 'policy')
  }
  const target = {
    table,
    schema: values.schema as string | undefined,
    policyName: values['policy-name'] as string | undefined,
  }
  let sql: string
  if (values.undo === true) {
    sql = roleModel ? dropRolePolicySql(target) : dropTenantPolicySql(target)
  } else {
    if (column === undefined) throw usage('missing --column <name>', 'policy')
    const roles = values.role as string[] | undefined
    sql = roleModel
      ? rolePolicySql({ ...target, column, roles })
      : tenantPolicySql({
          ...target,
          column,
          roles,
          setting: values.setting as string | undefined,
          type: type as TenantColumnType | undefined,
        })
  }
  io.stdout(`${sql}\n`)
  return 0
}

function quote(value: string): string {
  return JSON.stringify(value)
}

function version(): string {
  try {
    // dist/cli.js -> ../package.json
    const pkg = createRequire(import.meta.url)('../package.json') as { version?: string }
    return pkg.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

// Run when executed (node dist/cli.js, or the pg-tenant bin link), not when imported by tests.
const invokedDirectly = (() => {
  const entry = process.argv[1]
  if (entry === undefined) return false
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
})()

if (invokedDirectly) {
  main(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    columns: process.stdout.isTTY ? process.stdout.columns : undefined,
  }).then(
    (code) => {
      process.exitCode = code
    },
    (err: unknown) => {
      process.stderr.write(`pg-tenant: ${String(err)}\n`)
      process.exitCode = 2
    },
  )
}
