// The floor of a tenant-scoped query in one round trip: a minimal hand-written pg submittable that
// binds the tenant's set_config (prepared once per connection) and runs the statement with one
// Sync, with none of pg-tenant's checks, scopes or release decisions. What still separates it from
// raw pg is the server's work on the extra statement.
//
// With `reset`, the same trip also runs a session-level reset of the role and the tenant setting
// after the statement (prepared once per connection, bound and executed before the one Sync): the
// protocol-level cost of leaving nothing behind on release, whatever pg-tenant does to get there.
// With `reapply` as well, the tenant's set_config runs once more after the reset (so deferred
// constraint triggers, which fire at the implicit commit, still see the tenant): what pg-tenant sends.
import pg from 'pg'
import { prepareValue } from 'pg/lib/utils.js'

const SET = { name: 'bench_set', text: 'select set_config($1, $2, true)' }
const RESET = { name: 'bench_reset', text: "select set_config('role', 'none', false), set_config('app.tenant_id', '', false)" }

// Parses a statement under its name the first time a connection sees it. pg records only the
// statements its own Query objects parse, so the submittable keeps the record itself.
function parseOnce(connection, { name, text }) {
  if (connection.parsedStatements[name]) return
  connection.parse({ name, text })
  connection.parsedStatements[name] = text
}

class OneTrip {
  constructor({ tenant, text, values, reset, reapply }) {
    // Bind values are computed before anything is written: a throw halfway through the messages
    // would leave the connection waiting for a Sync that never comes.
    this.setValues = ['app.tenant_id', tenant]
    this.values = values.map((v) => prepareValue(v))
    this.text = text
    this.reset = reset
    this.reapply = reapply
    // Results arrive as: set_config's row and CommandComplete, the statement's RowDescription, rows
    // and CommandComplete, then (with reset) the reset's row and CommandComplete. pg's own Query
    // assembles the statement's result; only its messages reach it, told apart by counting
    // CommandCompletes.
    this.completes = 0
    this.inner = new pg.Client.Query(text, values)
    this.done = new Promise((resolve, reject) => {
      this.inner.callback = (err, result) => (err ? reject(err) : resolve(result))
    })
  }
  get _result() {
    return this.inner._result
  }
  submit(connection) {
    connection.stream.cork?.()
    try {
      parseOnce(connection, SET)
      connection.bind({ statement: SET.name, values: this.setValues })
      connection.execute({})
      connection.parse({ text: this.text })
      connection.bind({ values: this.values })
      connection.describe({ type: 'P' })
      connection.execute({})
      if (this.reset) {
        parseOnce(connection, RESET)
        connection.bind({ statement: RESET.name, values: [] })
        connection.execute({})
      }
      if (this.reapply) {
        connection.bind({ statement: SET.name, values: this.setValues })
        connection.execute({})
      }
      connection.sync()
    } finally {
      connection.stream.uncork?.()
    }
    return null
  }
  // Only the statement's RowDescription arrives: set_config and the reset are not described.
  handleRowDescription(m) { this.inner.handleRowDescription(m) }
  handleDataRow(m) { if (this.completes === 1) this.inner.handleDataRow(m) }
  handleCommandComplete(m, c) { if (this.completes++ === 1) this.inner.handleCommandComplete(m, c) }
  handleEmptyQuery(c) { this.inner.handleEmptyQuery(c) }
  handleError(e, c) { this.inner.handleError(e, c) }
  handleReadyForQuery(c) { this.inner.handleReadyForQuery(c) }
  handlePortalSuspended(c) { this.inner.handlePortalSuspended(c) }
}

/**
 * Runs `text` for `tenant` in one round trip on a client of `pool` (a plain pg.Pool whose
 * prepared statement names are the floor's own).
 *
 * @param {import('pg').Pool} pool
 * @param {{ tenant: string, text: string, values: unknown[], reset?: boolean, reapply?: boolean }} query
 */
export function floorQuery(pool, { tenant, text, values, reset = false, reapply = false }) {
  return new Promise((resolve, reject) => {
    pool.connect((err, client, release) => {
      if (err) return reject(err)
      const q = new OneTrip({ tenant, text, values, reset, reapply })
      client.query(q)
      q.done.then(
        (r) => {
          release()
          resolve(r)
        },
        (e) => {
          // A failed trip may have left the connection mid-protocol: destroy it, never reuse it.
          release(e)
          reject(e)
        },
      )
    })
  })
}
