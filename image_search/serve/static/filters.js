// Photo filters: a date range and a camera picker whose choices every search sends as `filters`.
// The cameras (with counts) and the years come from image_search/facets for the folder chosen;
// the controls stay hidden while the served build has no photo fields (facets answers 409).
"use strict";

(() => {
  const api = window.imageSearch;
  const $ = (id) => document.getElementById(id);
  const box = $("photo-filters");
  const after = $("taken-after");
  const before = $("taken-before");
  const camera = $("camera");
  const summary = $("summary");

  function chosen() {
    if (box.hidden) return null;
    const filters = {};
    if (after.value) filters.taken_after = after.value;    // from the start of that day
    if (before.value) filters.taken_before = before.value; // to its end
    if (camera.value) filters.camera = camera.value;
    return Object.keys(filters).length ? filters : null;
  }

  function described(filters) {
    const when = filters.taken_after || filters.taken_before
      ? `taken ${filters.taken_after || "…"} to ${filters.taken_before || "…"}`
      : "";
    return [when, filters.camera].filter(Boolean).join(", ");
  }

  let asked = 0;  // only the newest answer fills the controls

  async function loadFacets() {
    const mine = ++asked;
    const { folder, prefix } = api.scope();
    // The camera counts follow the dates chosen (each facet leaves out its own filter).
    const params = new URLSearchParams({ folder, prefix });
    if (after.value) params.set("taken_after", after.value);
    if (before.value) params.set("taken_before", before.value);
    let data;
    try {
      ({ data } = await api.call(`image_search/facets?${params}`));
    } catch (err) {
      if (mine === asked && err.status === 409) box.hidden = true;  // a build without the fields
      return;  // anything else shows when a search runs
    }
    if (mine !== asked) return;
    box.hidden = false;
    const current = camera.value;
    const options = data.cameras.map(({ camera: name, count }) => new Option(`${name} (${count})`, name));
    if (current && !data.cameras.some((c) => c.camera === current)) {
      options.unshift(new Option(`${current} (0)`, current));  // kept until changed
    }
    camera.replaceChildren(new Option("Any camera", ""), ...options);
    camera.value = current;
    const years = data.years.map((y) => y.year);
    const first = years.length ? `${years[0]}-01-01` : "";
    const last = years.length ? `${years[years.length - 1]}-12-31` : "";
    after.min = first;
    after.max = before.value || last;
    before.min = after.value || first;
    before.max = last;
  }

  function changed() {
    loadFacets();
    api.searchAgain();
  }

  api.useFilters(chosen);
  api.onAnyScopeChange(loadFacets);
  api.onDraw(() => {
    const filters = chosen();
    if (filters && summary.textContent) summary.textContent += ` · only photos ${described(filters)}`;
  });
  api.onCard((hit, item) => {
    const photo = hit.photo;
    const shown = photo ? [photo.taken && photo.taken.slice(0, 10), photo.camera].filter(Boolean) : [];
    if (!shown.length) return;
    const line = document.createElement("div");
    line.className = "photo";
    line.textContent = shown.join(" · ");
    if (photo.taken_source === "modified") line.title = "no date in the file: when it was uploaded";
    item.querySelector(".meta").after(line);
  });
  for (const input of [after, before, camera]) input.addEventListener("change", changed);
  $("clear-filters").addEventListener("click", () => {
    after.value = "";
    before.value = "";
    camera.value = "";
    changed();
  });

  loadFacets();
})();
