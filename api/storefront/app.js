// The storefront: a visitor's own session, a "for you" list that learns from each click, a
// browsable catalog, and a live panel over /v1/stats. Plain modules, no build step, no CDN.

const K = 12;
const CATALOG_PAGE = 1000;
const CATALOG_SHOWN = 48;
const HISTORY = 90; // samples kept per chart (one a second)

// Dark enough for white chip text at WCAG AA (4.5:1 or more against white).
const GENRE_COLOURS = {
  Action: "#b3261e", Adventure: "#a04100", Animation: "#8a5300", "Children's": "#6f5a00",
  Comedy: "#137333", Crime: "#4d5156", Documentary: "#00707a", Drama: "#1a5fb4",
  Fantasy: "#7b1fa2", "Film-Noir": "#202124", Horror: "#80261b", Musical: "#b0126b",
  Mystery: "#5b1a99", Romance: "#b4235a", "Sci-Fi": "#0b6e3a", Thriller: "#9c1010",
  War: "#5d4037", Western: "#795040", unknown: "#5f6368",
};

const state = {
  session: newSessionId(),
  catalog: new Map(), // item_id -> item
  catalogOrder: [], // the catalog's items as listed
  clicked: [], // item ids this session clicked, most recent last
  shown: [], // item ids of the last "for you" list, in order
  refreshesAfterClicks: 0,
  samples: { rate: [], p99: [], lag: [], freshness: [] },
  lastApplied: null,
};

function newSessionId() {
  return `web-${crypto.randomUUID()}`;
}

const $ = (selector) => document.querySelector(selector);

const ATTEMPTS = 6;

/// A JSON call. A 503 (the server shedding load, or its bus briefly away) is retried after
/// the Retry-After it sends: every call here is safe to repeat (events carry their id).
async function api(path, options = {}) {
  for (let attempt = 1; ; attempt += 1) {
    const response = await fetch(path, options);
    const body = await response.json().catch(() => null);
    if (response.status === 503 && attempt < ATTEMPTS) {
      const seconds = Number(response.headers.get("Retry-After")) || 1;
      await new Promise((done) => setTimeout(done, Math.min(seconds, 5) * 1000));
      continue;
    }
    if (!response.ok) {
      const message = body?.error?.message ?? response.statusText;
      throw new Error(`${path}: ${response.status} ${message}`);
    }
    return body;
  }
}

function genresOf(item) {
  const genres = item?.attributes?.genres;
  return Array.isArray(genres) ? genres.map(String) : [];
}

function titleOf(id) {
  return state.catalog.get(id)?.title ?? `item ${id}`;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key === "style") for (const [name, v] of Object.entries(value)) node.style.setProperty(name, v);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/// One item as a clickable card; `from` says where it is shown (and, for "for you", the
/// list's rec_id and the item's position), so the click is attributed to that list.
function card(id, from, whys = []) {
  const item = state.catalog.get(id);
  const genres = genresOf(item);
  const colour = GENRE_COLOURS[genres[0]] ?? "#5f6368";
  const year = item?.attributes?.release_year;
  const button = el(
    "button",
    { type: "button", class: "card", style: { "--genre": colour } },
    el("span", { class: "title" }, titleOf(id), year ? el("span", { class: "year" }, ` (${year})`) : null),
    el("span", { class: "genres" }, ...genres.map((g) =>
      el("span", { class: "genre", style: { "--genre": GENRE_COLOURS[g] ?? "#5f6368" } }, g))),
    whys.length ? el("span", { class: "whys" }, ...whys) : null,
  );
  button.addEventListener("click", () => click(id, from));
  return el("li", { "data-item-id": id, "data-genres": genres.join("|") }, button);
}

/// The chips that say why an item is in "for you", from its `explain` block.
function whyChips(explain) {
  if (!explain) return [];
  const chip = (kind, text) => el("span", { class: `why ${kind}`, "data-testid": "why", "data-why": kind }, text);
  const chips = [];
  if (explain.source === "knn" || explain.source === "transition") {
    const anchor = explain.because ? titleOf(explain.because) : "a title you clicked";
    chips.push(chip(explain.source === "knn" ? "co-visited" : "next", explain.source === "knn"
      ? `co-visited with ${anchor}`
      : `often next after ${anchor}`));
  } else if (explain.source === "intent") {
    chips.push(chip("intent", "close to your session's intent"));
  } else if (explain.source === "popular") {
    chips.push(chip("trending", "trending"));
  } else if (explain.source === "pinned") {
    chips.push(chip("pinned", "pinned"));
  }
  if (explain.explored) chips.push(chip("explore", "explored by the bandit"));
  return chips;
}

async function refreshRecommendations() {
  const query = new URLSearchParams({ session_id: state.session, k: String(K), explain: "true" });
  const answer = await api(`/v1/recommendations?${query}`);
  const list = $('[data-testid="recommendations"]');
  const before = new Map(state.shown.map((id, i) => [id, i]));
  const nodes = answer.items.map((rec, position) => {
    const node = card(rec.item_id, { rec_id: answer.rec_id, position }, whyChips(rec.explain));
    const was = before.get(rec.item_id);
    if (state.shown.length && was === undefined) node.classList.add("moved-new");
    else if (was !== undefined && was > position) node.classList.add("moved-up");
    return node;
  });
  list.replaceChildren(...nodes);
  list.dataset.recId = answer.rec_id;
  list.dataset.modelVersion = answer.model_version;
  state.shown = answer.items.map((r) => r.item_id);
  setTimeout(() => {
    for (const node of list.querySelectorAll(".moved-new, .moved-up")) {
      node.classList.remove("moved-new", "moved-up");
    }
  }, 2500);
  const status = answer.items.length < K
    ? `Only ${answer.items.length} of ${K} asked for: the engine knows few items yet.`
    : state.clicked.length
      ? `Learned from ${state.clicked.length} click${state.clicked.length === 1 ? "" : "s"}; last: ${titleOf(state.clicked.at(-1))}.`
      : "Click any title: the list learns from it within a second.";
  $("#for-you-status").textContent = status;
}

async function click(itemId, from) {
  const event = {
    event_id: crypto.randomUUID(),
    session_id: state.session,
    kind: "click",
    item_id: itemId,
    ts: Date.now(),
  };
  if (from?.rec_id) {
    event.rec_id = from.rec_id;
    event.position = from.position;
  }
  try {
    await api("/v1/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(event),
    });
  } catch (error) {
    $("#for-you-status").textContent = `The click was not accepted: ${error.message}`;
    return;
  }
  state.clicked.push(itemId);
  // The learner publishes a new version every few tens of milliseconds: look early, and
  // once more within the second for a slower publish.
  setTimeout(() => refreshRecommendations().catch(report), 250);
  setTimeout(() => {
    refreshRecommendations()
      .then(() => {
        state.refreshesAfterClicks += 1;
        $('[data-testid="recommendations"]').dataset.refreshes = String(state.refreshesAfterClicks);
      })
      .catch(report);
  }, 900);
}

async function loadCatalog() {
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: String(CATALOG_PAGE) });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/v1/items?${query}`);
    for (const item of page.items) state.catalog.set(item.item_id, item);
    cursor = page.next_cursor;
  } while (cursor);
  // Numeric ids in numeric order (MovieLens numbers its best-known titles first).
  const byId = new Intl.Collator(undefined, { numeric: true });
  state.catalogOrder = [...state.catalog.values()].sort((a, b) => byId.compare(a.item_id, b.item_id));
  const genres = [...new Set(state.catalogOrder.flatMap(genresOf))].sort();
  const select = $("#genre");
  select.replaceChildren(el("option", { value: "" }, "All genres"),
    ...genres.map((g) => el("option", { value: g }, g)));
}

let catalogShown = CATALOG_SHOWN;

function renderCatalog() {
  const genre = $("#genre").value;
  const words = $("#search").value.trim().toLowerCase();
  const matches = state.catalogOrder.filter((item) =>
    item.available !== false
    && (!genre || genresOf(item).includes(genre))
    && (!words || (item.title ?? "").toLowerCase().includes(words)));
  const list = $('[data-testid="catalog"]');
  list.replaceChildren(...matches.slice(0, catalogShown).map((item) => card(item.item_id, null)));
  list.dataset.matches = String(matches.length);
  $("#catalog-status").textContent = state.catalog.size === 0
    ? "The catalog is empty: no items published yet."
    : `${matches.length} of ${state.catalog.size} titles`;
  $("#more").hidden = matches.length <= catalogShown;
}

function sparkline(svg, values) {
  const max = Math.max(1e-9, ...values);
  const step = 200 / Math.max(1, HISTORY - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(38 - (v / max) * 36).toFixed(1)}`);
  svg.replaceChildren();
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
}

function push(series, value) {
  series.push(value);
  if (series.length > HISTORY) series.shift();
}

const ms = (us) => (us === undefined || us === null ? "–" : `${(us / 1000).toFixed(1)} ms`);

async function refreshStats() {
  const stats = await api("/v1/stats");
  const now = performance.now();
  const applied = stats.ingest.events_applied;
  let rate = 0;
  if (state.lastApplied) {
    const seconds = (now - state.lastApplied.at) / 1000;
    rate = seconds > 0 ? Math.max(0, applied - state.lastApplied.count) / seconds : 0;
  }
  state.lastApplied = { at: now, count: applied };
  $("#m-rate").textContent = Math.round(rate).toLocaleString();
  $("#m-lag").textContent = stats.learner_lag === null || stats.learner_lag === undefined
    ? "–" : `${stats.learner_lag.toLocaleString()} events`;
  $("#m-version").textContent = stats.model_version;
  $("#m-steps").textContent = (stats.reranker?.steps ?? 0).toLocaleString();
  $("#m-loss").textContent = stats.reranker?.last_loss === null || stats.reranker?.last_loss === undefined
    ? "–" : stats.reranker.last_loss.toFixed(4);
  $("#m-latency").textContent = `${ms(stats.recommendations.p50_us)} / ${ms(stats.recommendations.p99_us)}`;
  $("#m-freshness").textContent = stats.ingest.events_applied ? `${stats.freshness_ms.toLocaleString()} ms` : "–";
  $("#m-dlq").textContent = stats.ingest.dead_lettered.toLocaleString();
  push(state.samples.rate, rate);
  push(state.samples.p99, stats.recommendations.p99_us / 1000);
  push(state.samples.lag, stats.learner_lag ?? 0);
  push(state.samples.freshness, stats.freshness_ms);
  sparkline($("#c-rate"), state.samples.rate);
  sparkline($("#c-p99"), state.samples.p99);
  sparkline($("#c-lag"), state.samples.lag);
  sparkline($("#c-freshness"), state.samples.freshness);
}

function report(error) {
  console.warn(error.message);
}

function startSession() {
  state.session = newSessionId();
  state.clicked = [];
  state.shown = [];
  $("#session-id").textContent = state.session;
  return refreshRecommendations();
}

async function main() {
  $("#session-id").textContent = state.session;
  $("#new-session").addEventListener("click", () => startSession().catch(report));
  $("form.filters").addEventListener("submit", (event) => event.preventDefault());
  $("#genre").addEventListener("change", () => { catalogShown = CATALOG_SHOWN; renderCatalog(); });
  $("#search").addEventListener("input", () => { catalogShown = CATALOG_SHOWN; renderCatalog(); });
  $("#more").addEventListener("click", () => { catalogShown += CATALOG_SHOWN; renderCatalog(); });
  await loadCatalog();
  renderCatalog();
  await refreshRecommendations();
  document.body.dataset.ready = "true";
  await refreshStats().catch(report);
  setInterval(() => refreshStats().catch(report), 1000);
}

main().catch((error) => {
  $("#for-you-status").textContent = `The page could not load: ${error.message}`;
  report(error);
});
