/**
 * The command line's usage error: what the user typed cannot run (an unknown command or option, a
 * missing or malformed value, a connection string that is not a PostgreSQL URL). The command line
 * prints its message and the help hint, with no stack trace, and exits 2.
 */
import { TenantPoolError } from '../errors.js'

/**
 * Bad usage of the `pg-tenant` command line. `command` names the subcommand whose `--help` the
 * message points at (none: `pg-tenant --help`). Exit code 2.
 *
 * @example
 * ```ts
 * import { UsageError } from './usage-error.js'
 * throw new UsageError('missing --column <name>', 'doctor')
 * ```
 */
export class UsageError extends TenantPoolError {
  static override readonly code = 'CLI_USAGE' as const
  /** The subcommand whose help to point at, if any. */
  readonly command: string | undefined
  constructor(message: string, command?: string) {
    super('CLI_USAGE', message, { status: 400 })
    this.command = command
  }
}
