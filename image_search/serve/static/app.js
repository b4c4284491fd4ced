// The search page: plain browser JavaScript, no build step, no third-party code.
// Every URL is relative, so the page works under any API prefix or API Gateway stage.
"use strict";

(() => {
  const KEY_STORAGE = "image-search.api-key";
  const DEBOUNCE_MS = 350;
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("search-form"), query: $("query"), folder: $("folder"), k: $("k"),
    file: $("file"), drop: $("drop-zone"), error: $("error"), summary: $("summary"),
    timings: $("timings"), grid: $("grid"), results: $("results"), info: $("index-info"),
    queryImage: $("query-image"), subfolders: $("subfolders"), groups: $("groups"),
    more: $("more-groups"),
    keyPanel: $("key-panel"), keyForm: $("key-form"), key: $("api-key"), forget: $("forget-key"),
  };

  // ---- talking to the API ------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function storedKey() {
    try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }

  function detailOf(body, fallback) {
    const detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {  // FastAPI's 422: a list of {loc, msg}
      return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
    }
    return fallback;
  }

  let latest = 0;          // only the newest request may draw results
  let inFlight = null;     // AbortController of the request being drawn

  async function call(path, { json, form, method = "POST", signal } = {}) {
    const headers = {};
    const key = storedKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;  // the browser sets the multipart boundary
    }
    let response;
    try {
      response = await fetch(path, { method: body ? method : "GET", headers, body, signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "cannot reach the server");
    }
    let data = null;
    try { data = await response.json(); } catch { /* an empty or non-JSON body */ }
    if (!response.ok) throw new ApiError(response.status, detailOf(data, response.statusText));
    return { data, headers: response.headers };
  }

  // ---- messages ----------------------------------------------------------------------------

  function explain(err) {
    const d = err.message;
    switch (err.status) {
      case 0: return `Cannot reach the server. Is it still running?`;
      case 400: return `That file could not be used as an image: ${d}`;
      case 401: return `This server needs an API key: enter it under “API key” at the top.`;
      case 404: return `Not found: ${d}`;
      case 413: return `That file is too large: ${d}`;
      case 422: return `The request was not accepted: ${d}`;
      case 503: return `The search index is not ready yet: ${d}`;
      default: return `The search failed (HTTP ${err.status}): ${d}`;
    }
  }

  function showError(err) {
    el.error.textContent = explain(err);
    el.error.hidden = false;
    if (err.status === 401) el.keyPanel.open = true;
  }

  function clearError() {
    el.error.hidden = true;
    el.error.textContent = "";
  }

  // ---- results -----------------------------------------------------------------------------

  function searchedFolders(headers) {
    const prefix = headers.get("X-Image-Search-Prefix");
    if (prefix) return decodeURIComponent(prefix);
    const raw = headers.get("X-Image-Search-Folders");
    if (raw === null || raw === "*") return "all folders";
    const names = raw.split(",").filter(Boolean).map((n) => decodeURIComponent(n));
    const detected = headers.get("X-Image-Search-Detected") === "true";
    return names.map((n) => (detected ? `${n} (auto-detected)` : n)).join(", ");
  }

  function timingsText(headers) {
    const raw = headers.get("Server-Timing") || "";
    return raw.split(",").map((part) => {
      const [name, ...params] = part.trim().split(";");
      const dur = params.map((p) => p.trim()).find((p) => p.startsWith("dur="));
      return name && dur ? `${name} ${Number(dur.slice(4)).toFixed(1)} ms` : "";
    }).filter(Boolean).join(" · ");
  }

  function fileName(key) {
    return key.split("/").pop();
  }

  function describe(key) {
    // "animals/chelsea-the-cat.jpg" → "chelsea the cat": the best alt text an index can offer.
    return fileName(key).replace(/\.[^.]+$/, "").replace(/[-_]+/g, " ").trim() || key;
  }

  function card(hit) {
    const item = document.createElement("li");
    item.className = "hit";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.title = "Find similar images";
    button.setAttribute("aria-label", `Find images similar to ${hit.key}`);
    const img = document.createElement("img");
    img.src = hit.image_url;
    img.alt = `${describe(hit.key)}, in ${hit.folder}`;
    img.decoding = "async";
    img.addEventListener("error", () => item.classList.add("broken"), { once: true });
    button.append(img);
    button.addEventListener("click", () => runSimilar(hit));

    const meta = document.createElement("div");
    meta.className = "meta";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    score.title = hit.rank
      ? `cosine similarity (rank ${hit.rank})`
      : "best cosine similarity to another image of the group";
    const folder = document.createElement("span");
    folder.className = "folder";
    folder.textContent = hit.folder;
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = fileName(hit.key);
    key.title = hit.s3_path;
    meta.append(score, folder, key);
    item.append(button, meta);
    if (hit.rank) cardHooks.forEach((hook) => hook(hit, item));
    return item;
  }

  // What combine.js adds: buttons on each result card, a look at each answer, the searches.
  const cardHooks = [];
  const drawHooks = [];
  const searchHooks = [];

  function draw(what, result) {
    // /query answers {results, next_cursor, build_id}; the other searches a bare list.
    const hits = (Array.isArray(result.data) ? result.data : result.data && result.data.results) || [];
    const where = searchedFolders(result.headers);
    el.summary.textContent = hits.length
      ? `${hits.length} result${hits.length === 1 ? "" : "s"} ${what} · searched: ${where}`
      : `No results ${what} · searched: ${where}`;
    const timings = timingsText(result.headers);
    el.timings.textContent = timings ? `Server timings: ${timings}` : "";
    el.grid.replaceChildren(...hits.map(card));
    drawHooks.forEach((hook) => hook(result));
  }

  // Search results and near-duplicate groups share the results area: one shows at a time.
  let view = "search";

  function show(which) {
    view = which;
    el.grid.hidden = which !== "search";
    el.groups.hidden = which !== "duplicates";
    if (which !== "duplicates") el.more.hidden = true;
    $("more-results").hidden = true;  // until an answer with a next page is drawn
    $("parts").hidden = which !== "search" || !$("parts").children.length;
  }

  let previewUrl = "";  // object URL of an uploaded file, revoked when replaced

  function showQueryImage(src, alt) {
    if (previewUrl && previewUrl !== src) URL.revokeObjectURL(previewUrl);
    previewUrl = src && src.startsWith("blob:") ? src : "";
    el.queryImage.hidden = !src;
    if (src) {
      el.queryImage.src = src;
      el.queryImage.alt = alt;
    } else {
      el.queryImage.removeAttribute("src");
    }
  }

  async function run(what, path, request, preview = null) {
    if (inFlight) inFlight.abort();
    const mine = ++latest;
    inFlight = new AbortController();
    clearError();
    show("search");
    showQueryImage(preview && preview.src, preview && preview.alt);
    el.results.setAttribute("aria-busy", "true");
    el.summary.textContent = `Searching ${what}…`;
    try {
      const result = await call(path, { ...request, signal: inFlight.signal });
      if (mine === latest) draw(what, result);
    } catch (err) {
      if (err.name === "AbortError" || mine !== latest) return;
      el.summary.textContent = "";
      el.timings.textContent = "";
      el.grid.replaceChildren();
      showQueryImage(null);
      showError(err);
    } finally {
      if (mine === latest) el.results.removeAttribute("aria-busy");
    }
  }

  const k = () => Number(el.k.value);

  // The photo filters chosen (filters.js supplies them), or null for every photo.
  let chosenFilters = () => null;

  function filtersField() {
    const filters = chosenFilters();
    return filters ? { filters } : {};
  }

  // The deepest sub-folder chosen ("animals/cats/"), or "" for the whole folder.
  function prefix() {
    const chosen = [...el.subfolders.querySelectorAll("select")].map((s) => s.value);
    return chosen.filter(Boolean).pop() || "";
  }

  function runText() {
    const query = el.query.value.trim();
    if (!query) return;
    searchHooks.forEach((hook) => hook({ text: query }));
    run(`for “${query}”`, "image_search/search", {
      json: { query, k: k(), folder: el.folder.value, prefix: prefix(), ...filtersField() },
    });
  }

  function runImage(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("k", String(k()));
    form.append("folder", el.folder.value);
    form.append("prefix", prefix());
    const filters = chosenFilters();
    if (filters) form.append("filters", JSON.stringify(filters));  // a form field holds JSON
    const preview = { src: URL.createObjectURL(file), alt: `your image ${file.name}` };
    searchHooks.forEach((hook) => hook({ file, name: file.name, preview }));
    run(`like ${file.name}`, "image_search/search_by_image", { form }, preview);
  }

  function runSimilar(hit) {
    searchHooks.forEach((hook) => hook({ key: hit.key, preview: { src: hit.image_url, alt: describe(hit.key) } }));
    run(`similar to ${hit.key}`, "image_search/similar", {
      json: { key: hit.key, k: k(), folder: el.folder.value, prefix: prefix(), ...filtersField() },
    }, { src: hit.image_url, alt: describe(hit.key) });
    el.results.focus();
  }

  // ---- index information and folders -------------------------------------------------------

  async function loadFolders() {
    try {
      const { data } = await call("image_search/folders");
      const chosen = el.folder.value;
      const options = data.map(({ folder, count }) => new Option(`${folder} (${count})`, folder));
      el.folder.replaceChildren(el.folder.options[0], el.folder.options[1], ...options);
      const known = chosen === "*" || data.some((f) => f.folder === chosen);
      el.folder.value = known ? chosen : "";
      clearError();
    } catch (err) {
      showError(err);
    }
  }

  // One list per level under the chosen folder: choosing a sub-folder adds the next level.
  let levels = 0;  // bumped when the folder changes, so a late answer adds nothing

  async function addSubfolders(parent, depth) {
    const asked = levels;
    let data;
    try {
      ({ data } = await call(`image_search/folders?parent=${encodeURIComponent(parent)}`));
    } catch (err) {
      showError(err);
      return;
    }
    if (asked !== levels || !data.length) return;
    const field = document.createElement("div");
    field.className = "field";
    field.dataset.depth = String(depth);
    const label = document.createElement("label");
    label.htmlFor = `subfolder-${depth}`;
    label.textContent = `Inside ${parent}`;
    const select = document.createElement("select");
    select.id = label.htmlFor;
    select.append(new Option(`All of ${parent}`, ""), ...data.map(({ folder, count }) =>
      new Option(`${folder.slice(parent.length)} (${count})`, `${folder}/`)));
    select.addEventListener("change", async () => {
      dropBelow(depth);
      if (select.value) await addSubfolders(select.value, depth + 1);
      scopeChanged();
    });
    field.append(label, select);
    el.subfolders.append(field);
  }

  function dropBelow(depth) {
    for (const field of [...el.subfolders.children]) {
      if (Number(field.dataset.depth) > depth) field.remove();
    }
  }

  async function folderChanged() {
    levels += 1;
    el.subfolders.replaceChildren();
    const folder = el.folder.value;
    if (folder && folder !== "*") await addSubfolders(`${folder}/`, 1);
    scopeChanged();
  }

  const scopeListeners = [];  // while the near-duplicates show
  const scopeHooks = [];      // always

  function scopeChanged() {
    scopeHooks.forEach((hook) => hook());
    if (view === "duplicates") scopeListeners.forEach((listener) => listener());
    else if (el.query.value.trim()) runText();
  }

  async function loadInfo() {
    try {
      const { data } = await call("health");
      el.info.textContent =
        `${data.count} images indexed · model ${data.model} · ${data.runtime} ${data.precision}`;
    } catch (err) {
      el.info.textContent = err.status === 503 ? "no index loaded yet" : "";
    }
  }

  // ---- wiring ------------------------------------------------------------------------------

  let timer = 0;
  el.query.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(runText, DEBOUNCE_MS);
  });
  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    runText();
  });
  el.folder.addEventListener("change", folderChanged);
  el.k.addEventListener("change", () => view === "search" && el.query.value.trim() && runText());

  el.file.addEventListener("change", () => {
    if (el.file.files.length) runImage(el.file.files[0]);
    el.file.value = "";  // choosing the same file again searches again
  });
  for (const type of ["dragenter", "dragover"]) {
    el.drop.addEventListener(type, (event) => {
      event.preventDefault();
      el.drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    el.drop.addEventListener(type, () => el.drop.classList.remove("over"));
  }
  el.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) runImage(file);
  });
  // A file dropped just outside the zone would otherwise replace the page with the file.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault());
  }

  el.key.value = storedKey();
  el.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    try { localStorage.setItem(KEY_STORAGE, el.key.value.trim()); } catch { /* private mode */ }
    el.keyPanel.open = false;
    loadFolders();
    scopeHooks.forEach((hook) => hook());  // what failed without the key (the filters' facets)
    runText();
  });
  el.forget.addEventListener("click", () => {
    try { localStorage.removeItem(KEY_STORAGE); } catch { /* private mode */ }
    el.key.value = "";
  });

  // For duplicates.js: what it needs from this page, nothing more.
  window.imageSearch = {
    call, card, clearError, showError, show, showQueryImage, run, k, describe,
    onCard: (hook) => cardHooks.push(hook),
    onDraw: (hook) => drawHooks.push(hook),
    onSearch: (hook) => searchHooks.push(hook),
    scope: () => ({ folder: el.folder.value, prefix: prefix() }),
    onScopeChange: (listener) => scopeListeners.push(listener),
    // For filters.js: what it chooses, when the folder changes, and searching again.
    useFilters: (source) => { chosenFilters = source; },
    filtersField,
    onAnyScopeChange: (hook) => scopeHooks.push(hook),
    searchAgain: () => view === "search" && el.query.value.trim() && runText(),
  };

  loadInfo();
  loadFolders();
})();
