/**
 * SESSION_SCOPE_TRANSACTION_POOLING (error): scope 'session' with `pgbouncer: 'transaction'` or
 * `'statement'` declared. The tenant is set once per checkout and queries run in autocommit, so
 * the pooler may send each to a server connection set up for another tenant. Fix: scope
 * 'transaction', or pool_mode = session.
 */
import type { Rule } from '../rule.js'

export const sessionScopeTransactionPooling: Rule<'connection', 'SESSION_SCOPE_TRANSACTION_POOLING'> = {
  code: 'SESSION_SCOPE_TRANSACTION_POOLING',
  subject: 'connection',
  reads: 'nothing: the scope and pgbouncer options',
  check(_connection, { opts }) {
    if (opts.scope !== 'session') return undefined
    if (opts.pgbouncer !== 'transaction' && opts.pgbouncer !== 'statement') return undefined
    return {
      severity: 'error',
      code: 'SESSION_SCOPE_TRANSACTION_POOLING',
      object: 'connection',
      message: `scope 'session' sets the tenant once per checkout and runs each query in autocommit, but a pooler in ${opts.pgbouncer} mode may send each statement to a different server connection, where another tenant's settings or role can be in force`,
      fix: `-- use scope: 'transaction' in createTenantPool (safe behind PgBouncer in transaction mode),\n-- or set pool_mode = session for this database in pgbouncer.ini`,
    }
  },
}
