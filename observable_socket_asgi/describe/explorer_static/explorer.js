// The ObservableSocket explorer: lists a router's routes and push topics from its own
// AsyncAPI document and tries them over one WebSocket, speaking the wire protocol itself
// (uuid, route, headers, payload; PING/PONG). Plain modern JavaScript, no dependency, no
// build step: the page's Content-Security-Policy allows this file and nothing inline.

const body = document.body;
const BASE = body.dataset.base;
const $ = (role) => document.querySelector(`[data-role="${role}"]`);
const HEADERS_KEY = "observable-socket-explorer:headers";
// reconnect delays after an unasked close, in seconds; reset by every open
const BACKOFF = [0.5, 1, 2, 4, 5];
const PING_EVERY = 20000; // ms; the router's idle_timeout is 120 s by default
const LOG_LIMIT = 500;
const PUSH_LIMIT = 200;

// Small DOM helper: text is always a text node, never HTML.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replace a node's children; null, undefined and false stand for nothing.
const fill = (node, ...children) => node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));

const pretty = (value) => JSON.stringify(value, null, 2);
const clock = () => new Date().toLocaleTimeString(undefined, { hour12: false });

// A v4 uuid; crypto.randomUUID exists only in secure contexts (https, localhost).
function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// The API description

let doc = null; // the AsyncAPI document
let hooks = {}; // route name -> {hooks, timeout, rate_limit, idempotent}
const routes = new Map(); // route name -> {name, summary, description, request, response, errors}
const topics = []; // {pattern, description, payload}
let selected = null;

function resolve(ref) {
  if (!ref.startsWith("#/")) return {};
  let node = doc;
  for (const part of ref.slice(2).split("/")) {
    node = node?.[part.replaceAll("~1", "/").replaceAll("~0", "~")];
  }
  return node ?? {};
}

const deref = (node) => (node && node.$ref ? deref(resolve(node.$ref)) : node);

function readDocument() {
  const messages = doc.channels?.socket?.messages ?? {};
  for (const op of Object.values(doc.operations ?? {})) {
    const message = deref(op.messages?.[0]);
    const props = message?.payload?.properties ?? {};
    if (op.action === "receive") {
      const name = props.route?.const;
      if (typeof name !== "string" || name === "PING") continue; // the heartbeat; 404s
      const replies = (op.reply?.messages ?? []).map(deref);
      const answer = replies.find((m) => !String(m.name ?? "").startsWith("error "));
      routes.set(name, {
        name,
        summary: op.summary ?? "",
        description: op.description ?? "",
        request: props.payload && Object.keys(props.payload).length ? props.payload : null,
        response: answer?.payload?.properties?.payload ?? null,
        errors: replies.map((m) => m.payload?.properties?.status?.const).filter(Boolean),
      });
    } else if (op.action === "send") {
      topics.push({
        pattern: message?.name ?? op.title ?? "",
        description: op.description ?? "",
        payload: props.payload ?? null,
      });
    }
  }
  return messages;
}

// An example value for a JSON Schema: examples, default, const or enum first, else built
// from the type; `null` for a schema that says nothing.
function example(schema, depth = 0) {
  if (!schema || depth > 12) return null;
  if (schema.$ref) return example(resolve(schema.$ref), depth + 1);
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if ("example" in schema) return schema.example;
  if ("default" in schema) return schema.default;
  if ("const" in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  for (const key of ["anyOf", "oneOf"]) {
    if (Array.isArray(schema[key])) {
      const choice = schema[key].find((s) => deref(s)?.type !== "null") ?? schema[key][0];
      return example(choice, depth + 1);
    }
  }
  if (Array.isArray(schema.allOf)) {
    const parts = schema.allOf.map((s) => example(s, depth + 1));
    return parts.every((p) => p && typeof p === "object" && !Array.isArray(p))
      ? Object.assign({}, ...parts)
      : parts[0];
  }
  let type = schema.type;
  if (Array.isArray(type)) type = type.find((t) => t !== "null") ?? "null";
  if (!type && schema.properties) type = "object";
  switch (type) {
    case "object": {
      const out = {};
      for (const [key, sub] of Object.entries(schema.properties ?? {})) {
        out[key] = example(sub, depth + 1);
      }
      return out;
    }
    case "array": {
      if (Array.isArray(schema.prefixItems)) return schema.prefixItems.map((s) => example(s, depth + 1));
      const item = example(schema.items ?? {}, depth + 1);
      return Array.from({ length: Math.max(1, schema.minItems ?? 1) }, () => item);
    }
    case "integer":
    case "number": {
      if (typeof schema.minimum === "number") return schema.minimum;
      if (typeof schema.exclusiveMinimum === "number") return schema.exclusiveMinimum + 1;
      if (typeof schema.maximum === "number") return Math.min(0, schema.maximum);
      return 0;
    }
    case "boolean":
      return true;
    case "string": {
      const formats = { "date-time": new Date().toISOString(), date: new Date().toISOString().slice(0, 10),
        email: "user@example.com", uuid: uuid4(), uri: "https://example.com/" };
      if (schema.format in formats) return formats[schema.format];
      const fits = (n) => n >= (schema.minLength ?? 0) && n <= (schema.maxLength ?? Infinity);
      return fits(6) ? "string" : "x".repeat(Math.max(1, schema.minLength ?? 1));
    }
    default:
      return null;
  }
}

// A schema shown with its references written out, as a reader wants it.
function inline(schema, depth = 0) {
  if (!schema || typeof schema !== "object" || depth > 8) return schema;
  if (Array.isArray(schema)) return schema.map((s) => inline(s, depth + 1));
  if (schema.$ref) return inline(resolve(schema.$ref), depth + 1);
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, inline(v, depth + 1)]));
}

const groupOf = (name) => {
  const cut = name.search(/[/:.]/);
  return cut > 0 ? name.slice(0, cut) : "(no prefix)";
};

function grouped(names) {
  const groups = new Map();
  for (const name of names) {
    const key = groupOf(name);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(name);
  }
  return groups;
}

function renderLists() {
  const routeBox = $("routes");
  fill(routeBox, el("h2", { text: `Routes (${routes.size})` }));
  for (const [group, names] of grouped([...routes.keys()])) {
    routeBox.append(
      el("details", { class: "group", open: true, "data-group": group },
        el("summary", { text: group }),
        el("ul", {}, names.map((name) => {
          const route = routes.get(name);
          const guard = hooks[name]?.hooks ?? [];
          return el("li", {},
            el("button", { type: "button", class: "item", "data-route": name, title: route.summary,
              onclick: () => select(name) },
              name,
              guard.length ? el("span", { class: "badge hook", text: guard.join(" ") }) : null,
              route.summary ? el("span", { class: "summary", text: route.summary }) : null));
        }))));
  }
  const topicBox = $("topics");
  fill(topicBox, el("h2", { text: `Push topics (${topics.length})` }));
  for (const [group, patterns] of grouped(topics.map((t) => t.pattern))) {
    topicBox.append(
      el("details", { class: "group", open: true, "data-group": group },
        el("summary", { text: group }),
        el("ul", {}, patterns.map((pattern) => {
          const topic = topics.find((t) => t.pattern === pattern);
          return el("li", { class: "item", "data-topic": pattern, title: topic.description },
            pattern,
            topic.description ? el("span", { class: "summary", text: topic.description }) : null,
            topic.payload
              ? el("details", {}, el("summary", { text: "payload" }), el("pre", { text: pretty(inline(topic.payload)) }))
              : null);
        }))));
  }
}

function fieldsTable(schema) {
  const resolved = deref(schema);
  const props = resolved?.properties;
  if (!props) return null;
  const required = new Set(resolved.required ?? []);
  return el("table", { class: "fields", "data-role": "fields" },
    el("tr", {}, el("th", { text: "field" }), el("th", { text: "type" }), el("th", { text: "" })),
    Object.entries(props).map(([key, sub]) => {
      const s = deref(sub) ?? {};
      const type = [].concat(s.type ?? (s.anyOf ? "any of" : "any")).join(" | ");
      return el("tr", { "data-field": key },
        el("td", { text: key + (required.has(key) ? " *" : "") }),
        el("td", { text: type }),
        el("td", { class: "field-error" }));
    }));
}

function select(name) {
  const route = routes.get(name);
  if (!route) return;
  selected = name;
  for (const node of document.querySelectorAll("[data-route]")) {
    node.setAttribute("aria-current", String(node.dataset.route === name));
  }
  const info = hooks[name] ?? { hooks: [] };
  const limits = [];
  if (info.timeout) limits.push(`timeout ${info.timeout} s`);
  if (info.rate_limit) limits.push(`rate ${info.rate_limit[0]} / ${info.rate_limit[1]} s`);
  if (info.idempotent) limits.push("idempotent");
  fill($("route-doc"),
    el("h3", { "data-role": "route-name", text: name }),
    route.summary ? el("p", { text: route.summary }) : null,
    route.description ? el("p", { class: "notice", text: route.description }) : null,
    el("p", { "data-role": "guards" },
      info.hooks.length ? "Guarded by " : "No hook guards this route. ",
      info.hooks.map((h) => el("span", { class: "badge hook", "data-hook": h, text: h })),
      limits.map((l) => el("span", { class: "badge", text: l })),
      route.errors.length ? " · may answer " : "",
      route.errors.map((s) => el("span", { class: "badge", text: s }))),
    fieldsTable(route.request));
  fill($("route-schemas"),
    el("details", { class: "schemas", open: true },
      el("summary", { text: "Schemas" }),
      el("div", { class: "pair" },
        el("div", {}, el("h2", { text: "Payload" }),
          el("pre", { "data-role": "payload-schema",
            text: route.request ? pretty(inline(route.request)) : "any JSON (no declared type)" })),
        el("div", {}, el("h2", { text: "Response (2xx)" }),
          el("pre", { "data-role": "response-schema",
            text: route.response ? pretty(inline(route.response)) : "any JSON (no declared type)" })))));
  $("payload").value = pretty(route.request ? example(route.request) : null);
  $("editor-error").textContent = "";
  $("snippet").hidden = true;
  history.replaceState(null, "", `#${encodeURIComponent(name)}`);
}

// The socket

const socketPath = body.dataset.socket || location.pathname;
const socketUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${socketPath}`;
$("socket-url").textContent = socketUrl;
let ws = null;
let attempt = 0;
let retryTimer = null;
let pingTimer = null;
let awaitingPong = null;
const pending = new Map(); // uuid -> {route, started}

// Interactive: the routes are listed and the socket is open (bench/explorer.py times it).
const milestones = new Set();
function reached(what) {
  milestones.add(what);
  if (milestones.has("listed") && milestones.has("open") && !body.dataset.interactive) {
    body.dataset.interactive = "true";
    performance.mark("explorer-interactive");
  }
}

function setState(state, text) {
  const node = $("state");
  node.dataset.state = state;
  node.textContent = text ?? state;
}

function connect() {
  clearTimeout(retryTimer);
  setState(attempt === 0 ? "connecting" : "reconnecting", attempt === 0 ? "connecting" : "reconnecting…");
  const socket = new WebSocket(socketUrl);
  ws = socket;
  socket.addEventListener("open", () => {
    if (socket !== ws) return;
    attempt = 0;
    setState("open");
    reached("open");
    logEvent(`open ${socketUrl}`);
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, PING_EVERY);
  });
  socket.addEventListener("message", (event) => {
    if (socket === ws) receive(event.data);
  });
  socket.addEventListener("close", (event) => {
    if (socket !== ws) return;
    clearInterval(pingTimer);
    awaitingPong = null;
    forgetPending(`the connection closed (${event.code})`);
    const why = `closed ${event.code}${event.reason ? ` ${event.reason}` : ""}`;
    logEvent(why);
    // As the JS client does: 1008 (refused by policy) and 1011 are final, the user acts.
    if (event.code === 1008 || event.code === 1011) {
      setState("closed", why);
      return;
    }
    const delay = BACKOFF[Math.min(attempt, BACKOFF.length - 1)];
    attempt += 1;
    setState("reconnecting", `reconnecting in ${delay} s (${why})`);
    retryTimer = setTimeout(connect, delay * 1000);
  });
}

// Requests that will never be answered: the socket they went out on is gone.
function forgetPending(why) {
  for (const [id, request] of pending) {
    showAnswer({ uuid: id, status: "no answer", payload: why }, request);
  }
  pending.clear();
}

function reconnect() {
  attempt = 0;
  forgetPending("the page reconnected");
  const old = ws;
  ws = null;
  if (old && old.readyState <= WebSocket.OPEN) old.close(1000, "reconnect");
  connect();
}

function transmit(message) {
  const text = JSON.stringify(message);
  ws.send(text);
  logFrame("out", text, message);
}

function ping() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  if (awaitingPong) {
    logEvent("no PONG in time: reconnecting");
    ws.close(4000, "no pong");
    return;
  }
  awaitingPong = uuid4();
  transmit({ uuid: awaitingPong, route: "PING", headers: readHeaders() ?? {}, payload: {}, status: 200 });
}

function receive(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    logFrame("in", text, null);
    return;
  }
  logFrame("in", text, message);
  if (message.route === "PONG") {
    if (message.uuid === awaitingPong) awaitingPong = null;
    return;
  }
  const request = pending.get(message.uuid);
  if (request && !("route" in message)) {
    pending.delete(message.uuid);
    showAnswer(message, request);
  } else {
    showPush(message);
  }
}

// Requests and answers

function readHeaders() {
  try {
    const value = JSON.parse($("headers").value || "{}");
    return value && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

function readEditors() {
  const error = $("editor-error");
  error.textContent = "";
  let payload;
  try {
    payload = JSON.parse($("payload").value);
  } catch (exc) {
    error.textContent = `payload is not JSON: ${exc.message}`;
    return null;
  }
  const headers = readHeaders();
  if (headers === null) {
    error.textContent = "headers must be a JSON object";
    return null;
  }
  localStorage.setItem(HEADERS_KEY, $("headers").value);
  return { payload, headers };
}

function send() {
  if (!selected) {
    $("editor-error").textContent = "choose a route first";
    return;
  }
  const values = readEditors();
  if (!values) return;
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    $("editor-error").textContent = "the socket is not open";
    return;
  }
  const id = uuid4();
  const request = { route: selected, started: performance.now() };
  pending.set(id, request);
  transmit({ uuid: id, route: selected, headers: values.headers, payload: values.payload, status: 200 });
  fill($("response"), el("p", { class: "notice", text: `waiting for ${id}…` }));
}

function showAnswer(message, request) {
  const ms = performance.now() - request.started;
  const status = message.status;
  const ok = typeof status === "number" && status >= 200 && status < 300;
  const errors = Array.isArray(message.payload?.errors) ? message.payload.errors : [];
  for (const cell of document.querySelectorAll("[data-field] .field-error")) cell.textContent = "";
  for (const error of errors) {
    const loc = Array.isArray(error.loc) ? error.loc : [];
    const row = loc.length ? document.querySelector(`[data-field="${CSS.escape(String(loc[0]))}"] .field-error`) : null;
    if (row) row.textContent = [row.textContent, `${loc.join(".")}: ${error.msg}`].filter(Boolean).join("; ");
  }
  fill($("response"),
    el("div", {},
      el("span", { class: `status ${ok ? "ok" : "bad"}`, "data-role": "status", text: status }),
      el("span", { class: "meta", text: `${request.route}  uuid ${message.uuid}  ${ms.toFixed(1)} ms` })),
    errors.length
      ? el("ul", { class: "errors", "data-role": "field-errors" },
          errors.map((e) => el("li", { "data-loc": (e.loc ?? []).join("."),
            text: `${(e.loc ?? []).join(".") || "(payload)"}: ${e.msg}` })))
      : null,
    message.headers && Object.keys(message.headers).length
      ? el("pre", { "data-role": "response-headers", text: `headers ${pretty(message.headers)}` })
      : null,
    el("pre", { "data-role": "response-payload", text: pretty(message.payload ?? null) }));
}

function showPush(message) {
  const h = message.headers ?? {};
  const list = $("pushes");
  list.prepend(
    el("li", { "data-push-topic": message.route ?? "" },
      el("span", { class: "time", text: clock() }),
      el("strong", { text: message.route ?? "(no route)" }),
      "offset" in h ? el("span", { class: "badge", "data-role": "offset", text: `offset ${h.offset}` }) : null,
      "epoch" in h ? el("span", { class: "badge", "data-role": "epoch", text: `epoch ${h.epoch}` }) : null,
      el("pre", { text: pretty(message.payload ?? null) })));
  while (list.children.length > PUSH_LIMIT) list.lastElementChild.remove();
}

// The frame log

function matchesFilter(node) {
  const filter = $("log-filter").value.trim().toLowerCase();
  const beat = node.dataset.heartbeat === "true";
  if (beat && !$("log-heartbeat").checked) return false;
  return !filter || node.textContent.toLowerCase().includes(filter);
}

function addLog(node) {
  node.hidden = !matchesFilter(node);
  const log = $("log");
  log.prepend(node);
  while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
}

function logFrame(dir, text, message) {
  const beat = message?.route === "PING" || message?.route === "PONG";
  const size = new TextEncoder().encode(text).length;
  addLog(el("li", { "data-dir": dir, "data-heartbeat": String(beat) },
    el("span", { class: "time", text: clock() }), text, el("span", { class: "size", text: ` ${size} B` })));
}

function logEvent(text) {
  addLog(el("li", { "data-dir": "event", "data-heartbeat": "false" },
    el("span", { class: "time", text: clock() }), text));
}

function refilter() {
  for (const node of $("log").children) node.hidden = !matchesFilter(node);
}

// "Copy as"

function pyLiteral(value, indent = "") {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") return String(value);
  if (Array.isArray(value)) return `[${value.map((v) => pyLiteral(v, indent)).join(", ")}]`;
  const items = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v, indent)}`);
  return `{${items.join(", ")}}`;
}

const shellQuote = (text) => `'${text.replaceAll("'", "'\\''")}'`;

function snippet(format) {
  const values = readEditors();
  if (!values || !selected) return null;
  const { payload, headers } = values;
  const hasHeaders = Object.keys(headers).length > 0;
  if (format === "python") {
    return [
      "import asyncio",
      "",
      "from observable_socket_asgi.client import connect",
      "",
      "",
      "async def main() -> None:",
      `    async with connect(${JSON.stringify(socketUrl)}) as sock:`,
      `        res = await sock.request(${JSON.stringify(selected)}, ${pyLiteral(payload)}` +
        (hasHeaders ? `, headers=${pyLiteral(headers)})` : ")"),
      "        print(res.status, res.payload)",
      "",
      "",
      "asyncio.run(main())",
    ].join("\n");
  }
  if (format === "cli") {
    const parts = ["observable-socket call", shellQuote(socketUrl), shellQuote(selected), shellQuote(JSON.stringify(payload))];
    for (const [key, value] of Object.entries(headers)) {
      parts.push("-H", shellQuote(`${key}=${typeof value === "string" ? value : JSON.stringify(value)}`));
    }
    return parts.join(" ");
  }
  return [
    'import { ObservableSocket, Message } from "@djanext/observable-socket";',
    "",
    `const socket = new ObservableSocket("explorer", ${JSON.stringify(socketUrl)}, () => {}, () => {});`,
    `const res = await socket.sendAndWait(new Message(${JSON.stringify(selected)}, ${JSON.stringify(payload)}` +
      (hasHeaders ? `, ${JSON.stringify(headers)}));` : "));"),
    "console.log(res.message?.status, res.message?.payload);",
  ].join("\n");
}

async function copy(format) {
  const text = snippet(format);
  if (text === null) {
    if (!selected) $("editor-error").textContent = "choose a route first";
    return;
  }
  const box = $("snippet");
  box.textContent = text;
  box.dataset.format = format;
  box.hidden = false;
  try {
    await navigator.clipboard.writeText(text);
    $("editor-error").textContent = `copied as ${format}`;
  } catch {
    $("editor-error").textContent = "select the text below to copy it";
  }
}

// Live metrics: the same figures as `observable-socket top`, rates over the last second

let previous = null;

function quantile(q, buckets) {
  const items = buckets.map(([b, c]) => [b === null ? Infinity : b, c]).sort((a, b) => a[0] - b[0]);
  if (!items.length || items[items.length - 1][1] <= 0) return null;
  const rank = q * items[items.length - 1][1];
  let lower = 0;
  let below = 0;
  for (const [upper, count] of items) {
    if (count >= rank) {
      if (upper === Infinity) return lower;
      if (count === below) return upper;
      return lower + ((upper - lower) * (rank - below)) / (count - below);
    }
    lower = upper;
    below = count;
  }
  return lower;
}

function ms(seconds) {
  if (seconds === null) return "-";
  if (seconds < 0.001) return `${(seconds * 1e6).toFixed(0)} us`;
  if (seconds < 1) return `${(seconds * 1e3).toFixed(1)} ms`;
  return `${seconds.toFixed(2)} s`;
}

function bytes(n) {
  for (const unit of ["B", "KiB", "MiB"]) {
    if (Math.abs(n) < 1024) return `${n.toFixed(0)} ${unit}`;
    n /= 1024;
  }
  return `${n.toFixed(1)} GiB`;
}

const total = (stats) => Object.values(stats.by_status).reduce((a, b) => a + b, 0);

function renderMetrics(now, before) {
  const seconds = before ? (now.at - before.at) / 1000 : 0;
  const rate = (a, b) => (b === undefined || seconds <= 0 ? "-" : (Math.max(a - b, 0) / seconds).toFixed(1));
  let requests = 0;
  let requestsBefore = 0;
  const rows = [];
  for (const [name, stats] of Object.entries(now.routes)) {
    if (total(stats) === 0) continue; // a label no request has used yet
    const old = before ? before.routes[name] ?? { by_status: {}, buckets: [] } : undefined;
    const oldCounts = new Map((old?.buckets ?? []).map(([b, c]) => [b, c]));
    const window = old ? stats.buckets.map(([b, c]) => [b, c - (oldCounts.get(b) ?? 0)]) : stats.buckets;
    requests += total(stats);
    requestsBefore += old ? total(old) : 0;
    rows.push([name, rate(total(stats), old ? total(old) : undefined), ms(quantile(0.5, window)),
      ms(quantile(0.99, window)), total(stats).toFixed(0)]);
  }
  rows.sort((a, b) => a[0].localeCompare(b[0]));
  const backplane = now.backplane_connected === null ? "no figures" : now.backplane_connected >= 1 ? "connected" : "DISCONNECTED";
  fill($("metrics"),
    el("p", { class: "summary", "data-role": "metrics-summary" },
      `connections ${now.connections_open.toFixed(0)} open, ${now.refused.toFixed(0)} refused · `,
      `requests ${before ? rate(requests, requestsBefore) : "-"}/s · in flight ${now.in_flight.toFixed(0)} · `,
      `queued pushes ${bytes(now.queued_push_bytes)} · backplane ${backplane}`),
    el("table", { class: "metrics" },
      el("tr", {}, ["route", "req/s", "p50", "p99", "total"].map((t) => el("th", { text: t }))),
      rows.length
        ? rows.map((r) => el("tr", { "data-metrics-route": r[0] }, r.map((t) => el("td", { text: t }))))
        : el("tr", {}, el("td", { text: "(no requests yet)" }))));
}

async function refreshMetrics() {
  try {
    const response = await fetch(`${BASE}/top.json`, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const snap = await response.json();
    snap.at = performance.now();
    renderMetrics(snap, previous);
    previous = snap;
  } catch (exc) {
    fill($("metrics"), el("p", { class: "notice", text: `metrics unavailable: ${exc.message}` }));
  }
}

// Start

async function start() {
  const saved = localStorage.getItem(HEADERS_KEY);
  if (saved !== null) $("headers").value = saved;
  $("send").addEventListener("click", send);
  $("headers").addEventListener("input", () => {
    if (readHeaders() !== null) localStorage.setItem(HEADERS_KEY, $("headers").value);
  });
  $("reconnect").addEventListener("click", reconnect);
  $("ping").addEventListener("click", () => {
    awaitingPong = null; // asked for: not a missed PONG
    ping();
  });
  $("log-filter").addEventListener("input", refilter);
  $("log-heartbeat").addEventListener("change", refilter);
  $("clear-log").addEventListener("click", () => fill($("log")));
  $("clear-pushes").addEventListener("click", () => fill($("pushes")));
  for (const button of document.querySelectorAll('[data-role="copy"]')) {
    button.addEventListener("click", () => copy(button.dataset.format));
  }
  $("payload").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send();
  });
  connect();
  try {
    const response = await fetch(`${BASE}/api.json`, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const api = await response.json();
    doc = api.asyncapi;
    hooks = api.routes ?? {};
    readDocument();
    document.title = `${doc.info?.title ?? "ObservableSocket"} · explorer`;
    $("title").textContent = `${doc.info?.title ?? "ObservableSocket"} explorer`;
    $("loading").remove();
    renderLists();
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (routes.has(wanted)) select(wanted);
    body.dataset.ready = "true";
    reached("listed");
    if (api.metrics) {
      $("metrics-panel").hidden = false;
      await refreshMetrics();
      setInterval(refreshMetrics, 1000);
    }
  } catch (exc) {
    $("loading").textContent = `could not load the API description: ${exc.message}`;
  }
}

start();
