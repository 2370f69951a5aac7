/**
 * A loopback TCP proxy between a test's pg clients and PostgreSQL that counts the client's
 * round trips: every Sync ('S') of the extended protocol and every simple Query ('Q') ends in one
 * ReadyForQuery, so their sum is the number of round trips, whatever the timing. It also records
 * which statements were parsed (Parse messages: name and text).
 *
 * Assert on behaviour read off the wire (round trips, whether a given statement was parsed), never
 * on the exact order or mix of message types: that is pg's business, and changes between pg
 * versions (Describe or Flush added, a statement written as Bind+Execute without Parse, ...)
 * without pg-tenant behaving any differently.
 */
import net from 'node:net'

export interface WireProxy {
  readonly port: number
  /** Round trips (Sync + Query messages) sent by clients since the last reset. */
  readonly roundTrips: number
  /**
   * Every frontend message type seen since the last reset, in order (e.g. 'P', 'B', 'E', 'S'): for
   * assertion messages only. Its exact sequence is pg's, not a contract (see above).
   */
  readonly messages: readonly string[]
  /** Every Parse message since the last reset, in order: statement name ('' if unnamed) and text. */
  readonly parses: readonly Parsed[]
  /** How many messages of this type (e.g. 'P') clients sent since the last reset. */
  count(type: string): number
  reset(): void
  /** Destroys every proxied connection (both sides), as a network failure would. */
  cutAll(): void
  close(): Promise<void>
}

export interface Parsed {
  readonly name: string
  readonly text: string
}

export async function startWireProxy(targetHost: string, targetPort: number): Promise<WireProxy> {
  let messages: string[] = []
  let parses: Parsed[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost)
    sockets.add(client).add(upstream)
    for (const s of [client, upstream]) {
      s.on('error', () => undefined)
      s.on('close', () => {
        sockets.delete(s)
        client.destroy()
        upstream.destroy()
      })
    }
    upstream.pipe(client)
    let buffered = Buffer.alloc(0)
    let started = false // the startup message (and an SSLRequest) carry no type byte
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk)
      buffered = Buffer.concat([buffered, chunk])
      for (;;) {
        if (!started) {
          if (buffered.length < 8) return
          const length = buffered.readInt32BE(0)
          if (buffered.length < length) return
          const code = buffered.readInt32BE(4)
          buffered = buffered.subarray(length)
          if (code !== 80877103) started = true // not an SSLRequest: that was the startup message
          continue
        }
        if (buffered.length < 5) return
        const length = buffered.readInt32BE(1)
        if (buffered.length < length + 1) return
        const type = String.fromCharCode(buffered[0]!)
        messages.push(type)
        if (type === 'P') parses.push(readParse(buffered.subarray(5, length + 1)))
        buffered = buffered.subarray(length + 1)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    get roundTrips() {
      return messages.filter((m) => m === 'S' || m === 'Q').length
    },
    get messages() {
      return messages
    },
    get parses() {
      return parses
    },
    count(type: string) {
      return messages.filter((m) => m === type).length
    },
    reset() {
      messages = []
      parses = []
    },
    cutAll() {
      for (const s of sockets) s.destroy()
    },
    close() {
      for (const s of sockets) s.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

/** A Parse message's body: the statement name and the query text, both NUL-terminated. */
function readParse(body: Buffer): Parsed {
  const nameEnd = body.indexOf(0)
  const textEnd = body.indexOf(0, nameEnd + 1)
  return { name: body.toString('utf8', 0, nameEnd), text: body.toString('utf8', nameEnd + 1, textEnd) }
}
