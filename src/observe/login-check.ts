/**
 * A login role for which RLS cannot apply: a superuser, or a role with BYPASSRLS. Row-Level
 * Security policies do not bind such a role, so an application connected as it "works" while every
 * tenant sees every row. pg-tenant learns it once per pool, on its first checkout (one statement,
 * once), and says so with one process warning; later queries pay nothing.
 */

/** The `code` of the process warning (`process.on('warning', (w) => w.code)`). */
export const RLS_BYPASS_WARNING_CODE = 'PG_TENANT_RLS_BYPASSED'

/** What is asked of the server, once per pool: the login role and what it may bypass. */
export const LOGIN_CHECK_SQL =
  'select session_user::text as login, rolsuper as superuser, rolbypassrls as bypassrls from pg_roles where rolname = session_user'

/** The row the check returns. */
export interface LoginRow {
  readonly login?: unknown
  readonly superuser?: unknown
  readonly bypassrls?: unknown
}

/** The warning to give for the login role, or undefined when RLS applies to it. */
export function rlsBypassWarning(row: LoginRow | undefined): string | undefined {
  if (row === undefined) return undefined
  const reason = row.superuser === true ? 'is a superuser' : row.bypassrls === true ? 'has the BYPASSRLS attribute' : undefined
  if (reason === undefined) return undefined
  const login = String(row.login)
  return (
    `pg-tenant: the login role ${JSON.stringify(login)} ${reason}, so PostgreSQL's Row-Level Security policies do not ` +
    'apply to it: every tenant sees every row, whatever pg-tenant binds. Connect as a role that is neither superuser nor ' +
    'BYPASSRLS and does not own the tables (e.g. CREATE ROLE app_user LOGIN NOSUPERUSER NOBYPASSRLS, with grants on ' +
    'the tables). If this is meant (a migration, an admin job), pass { allowRlsBypass: true } to createTenantPool.'
  )
}

/** Says it, once: a process warning with a stable code. */
export function warnRlsBypass(message: string): void {
  process.emitWarning(message, { type: 'PgTenantWarning', code: RLS_BYPASS_WARNING_CODE })
}
