/**
 * What a connection must not keep when it goes back to the pool: a role, or a value in any setting
 * pg-tenant writes. User SQL can leave either behind at session level (`SET ROLE`, `SET app.x`,
 * `set_config(..., false)`, also inside a DO block or a function, where no lexer sees it), so the
 * pool resets them all, in the same round trip as the single-trip query or the COMMIT.
 *
 * One statement does it: `select set_config('role', 'none', false), set_config($1, '', false), ...`
 * for every setting name this pool has written (its `setting` and every tenant setting seen so
 * far). `role = none` is `RESET ROLE` for a login that has no default role; a setting set to `''`
 * reads as unset to every policy written with `nullif(current_setting(name, true), '')`.
 *
 * After a COMMIT it runs in a transaction of its own. After a lone statement it runs in that
 * statement's implicit transaction, before the commit, where deferred constraint triggers fire:
 * there the tenant's `set_config(..., true)` follows it again (see scope.ts), so those triggers
 * still run as the tenant, and at the commit the transaction-local values go and the reset's
 * empty session values stay. (`SET CONSTRAINTS ALL IMMEDIATE` would fire them earlier instead, but
 * PostgreSQL before 18 answers it with a WARNING outside an explicit transaction block.)
 */
import { preparedName, type PrefixStatement } from '../driver/index.js'

/** The setting names of one pool and the statement that resets them, with the role. */
export class ResetPlan {
  readonly #names: string[] = []
  readonly #keys = new Set<string>()
  #statement: PrefixStatement | undefined
  // Named copies of the reset, one per prepared tenant statement it is parsed with.
  #companions = new Map<string, PrefixStatement>()

  constructor(setting: string) {
    this.add([setting])
  }

  /** Every setting name written so far, in the order first seen. */
  get names(): readonly string[] {
    return this.#names
  }

  /** Adds setting names a tenant writes. GUC names are case-insensitive. */
  add(names: Iterable<string>): void {
    for (const name of names) {
      const key = name.toLowerCase()
      if (this.#keys.has(key)) continue
      this.#keys.add(key)
      this.#names.push(name)
      this.#statement = undefined
      this.#companions = new Map()
    }
  }

  /** The reset, parsed unnamed each time it is sent. */
  statement(): PrefixStatement {
    return (this.#statement ??= {
      text: resetText(this.#names.length),
      values: [...this.#names],
    })
  }

  /**
   * The reset as a named statement parsed exactly when `prefix` (a named tenant statement) is, in
   * the same pipeline: then the server can never hold one without the other, and binding the reset
   * can never fail after the caller's statement has run (see `PrefixStatement.unit`).
   */
  companionOf(prefix: PrefixStatement & { name: string }): PrefixStatement {
    let companion = this.#companions.get(prefix.name)
    if (companion === undefined) {
      const { text, values } = this.statement()
      companion = { text, values, name: preparedName(`${prefix.name}\0${text}`), unit: prefix.name }
      this.#companions.set(prefix.name, companion)
    }
    return companion
  }
}

function resetText(count: number): string {
  const calls = ["set_config('role', 'none', false)"]
  for (let i = 1; i <= count; i++) calls.push(`set_config($${i}, '', false)`)
  return `select ${calls.join(', ')}`
}
