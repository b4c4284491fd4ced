// The near-duplicates view: groups of near-identical images in the chosen folder or sub-folder,
// a page at a time. Uses what app.js shares on window.imageSearch.
"use strict";

(() => {
  const page = window.imageSearch;
  const PAGE_SIZE = 20;
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("duplicates-form"), score: $("dup-score"), groups: $("groups"), more: $("more-groups"),
    summary: $("summary"), timings: $("timings"), results: $("results"),
  };

  let loaded = 0;   // groups shown so far
  let latest = 0;   // only the newest request may draw

  function where({ folder, prefix }) {
    if (prefix) return prefix;
    return folder && folder !== "*" ? folder : "all folders";
  }

  function groupItem(group, number) {
    const item = document.createElement("li");
    item.className = "group";
    const heading = document.createElement("h3");
    const more = group.size > group.images.length ? ` (${group.images.length} shown)` : "";
    heading.textContent =
      `Group ${number}: ${group.size} images${more} · best match ${group.score.toFixed(3)}`;
    const grid = document.createElement("ul");
    grid.className = "grid";
    grid.append(...group.images.map((image) => page.card(image)));
    item.append(heading, grid);
    return item;
  }

  async function load(fresh) {
    const mine = ++latest;
    const scope = page.scope();
    const query = new URLSearchParams({
      folder: scope.folder === "*" ? "" : scope.folder,
      prefix: scope.prefix,
      offset: String(fresh ? 0 : loaded),
      limit: String(PAGE_SIZE),
    });
    if (el.score.value) query.set("min_score", el.score.value);
    page.clearError();
    page.show("duplicates");
    page.showQueryImage(null);
    el.timings.textContent = "";
    el.results.setAttribute("aria-busy", "true");
    if (fresh) el.summary.textContent = "Looking for near-duplicates…";
    try {
      const { data } = await page.call(`image_search/duplicates?${query}`);
      if (mine !== latest) return;
      if (fresh) {
        el.groups.replaceChildren();
        loaded = 0;
      }
      el.groups.append(...data.groups.map((group, at) => groupItem(group, loaded + at + 1)));
      loaded += data.groups.length;
      const at = `similarity ≥ ${data.min_score} · in ${where(scope)}`;
      el.summary.textContent = data.total
        ? `${data.total} group${data.total === 1 ? "" : "s"} of near-identical images · ${at}`
        : `No near-duplicates · ${at}`;
      el.more.hidden = loaded >= data.total;
    } catch (err) {
      if (mine !== latest) return;
      el.summary.textContent = "";
      el.groups.replaceChildren();
      el.more.hidden = true;
      page.showError(err);
    } finally {
      if (mine === latest) el.results.removeAttribute("aria-busy");
    }
  }

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(true);
  });
  el.more.addEventListener("click", () => load(false));
  page.onScopeChange(() => load(true));
})();
