/**
 * Real HTTP for the adapter tests: servers on 127.0.0.1, requests with node's fetch.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A small random delay, so that requests of different tenants interleave inside handlers. */
export const jitter = (maxMs = 4) => sleep(Math.random() * maxMs)

export interface Listening {
  readonly url: string
  close(): Promise<void>
}

/** Serves `handler` (an Express app, say) on a free loopback port. */
export async function listen(handler: http.RequestListener): Promise<Listening> {
  const server = http.createServer(handler)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

export interface Reply<T = any> {
  readonly status: number
  readonly body: T
}

/** One request; `json` is sent as a JSON body. Resolves with the status and the parsed JSON. */
export async function call<T = any>(
  url: string,
  options: { method?: string; headers?: Record<string, string>; json?: unknown } = {},
): Promise<Reply<T>> {
  const headers: Record<string, string> = { ...options.headers }
  let body: string | undefined
  if (options.json !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(options.json)
  }
  const response = await fetch(url, {
    method: options.method ?? (body === undefined ? 'GET' : 'POST'),
    headers,
    body,
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) }
}

/** Runs `tasks` with at most `limit` in flight, in order of start; resolves with their results. */
export async function pooled<T>(tasks: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length)
  let next = 0
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++
      results[i] = await tasks[i]!()
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker))
  return results
}

/** A shuffled copy (Fisher-Yates), so that tenants' requests interleave unpredictably. */
export function shuffled<T>(items: T[]): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/**
 * One GET through `agent` with node:http. With `new http.Agent({ keepAlive: true, maxSockets: 1 })`
 * successive requests share one connection, which fetch does not promise.
 */
export function callVia<T = any>(
  agent: http.Agent,
  url: string,
  headers: Record<string, string> = {},
): Promise<Reply<T>> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}
