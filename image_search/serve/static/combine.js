// "More like this" / "less like this" on result cards, and every page of the results: each
// search becomes the first part of a combined query (POST image_search/query) that the cards add
// to or take from; the parts are listed above the results, each removable.
"use strict";

(() => {
  const api = window.imageSearch;
  // Negatives weigh less than what is looked for (docs/api.md: how to weigh them).
  const LESS_WEIGHT = 0.5;
  const UPLOAD_FIELD = "upload";
  const parts = document.getElementById("parts");
  const moreResults = document.getElementById("more-results");
  const grid = document.getElementById("grid");

  let start = null;    // the search the query grew from: {text} | {key} | {file, name}
  let liked = [];      // keys of indexed images to find more like
  let disliked = [];   // keys of indexed images to find less like
  let asked = null;    // the last query sent, for its next pages
  let cursor = null;

  api.onSearch((search) => {
    start = search;
    liked = [];
    disliked = [];
    asked = null;
    drawParts();
  });

  api.onCard((hit, item) => {
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(
      action("More like this", `Add ${hit.key} to the search`, () => change(hit.key, liked, disliked)),
      action("Less like this", `Search away from ${hit.key}`, () => change(hit.key, disliked, liked)),
    );
    item.append(actions);
  });

  api.onDraw((result) => {
    cursor = (result.data && result.data.next_cursor) || null;
    moreResults.hidden = !cursor;
  });

  function action(text, label, onClick) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.setAttribute("aria-label", label);
    button.addEventListener("click", onClick);
    return button;
  }

  function change(key, into, outOf) {
    const at = outOf.indexOf(key);
    if (at >= 0) outOf.splice(at, 1);
    if (!into.includes(key)) into.push(key);
    search();
  }

  function query() {
    const positive = [];
    if (start && start.text) positive.push({ text: start.text });
    if (start && start.key) positive.push({ key: start.key });
    if (start && start.file) positive.push({ file: UPLOAD_FIELD });
    positive.push(...liked.map((key) => ({ key })));
    const negative = disliked.map((key) => ({ key, weight: LESS_WEIGHT }));
    const { folder, prefix } = api.scope();
    // "" on this page means "detect the folder": the combined query searches everywhere then.
    return { positive, negative, k: api.k(), folder, prefix, ...api.filtersField() };
  }

  function request(body) {
    if (!(start && start.file)) return { json: body };
    const form = new FormData();
    form.append("query", JSON.stringify(body));
    form.append(UPLOAD_FIELD, start.file, start.name);
    return { form };
  }

  function startText() {
    return start.text ? `“${start.text}”` : `like ${start.key || start.name}`;
  }

  function summary() {
    const more = liked.length && `+ ${liked.length} liked`;
    const less = disliked.length && `− ${disliked.length} disliked`;
    return ["for", start && startText(), more, less].filter(Boolean).join(" ");
  }

  function search() {
    asked = query();
    drawParts();
    if (!asked.positive.length) {
      grid.replaceChildren();
      moreResults.hidden = true;
      document.getElementById("summary").textContent =
        "Nothing left to look for: search again, or choose “More like this” on a result.";
      return;
    }
    const preview = start && start.preview;
    api.run(summary(), "image_search/query", request(asked), preview);
  }

  async function nextPage() {
    if (!asked || !cursor) return;
    moreResults.disabled = true;
    try {
      const { data } = await api.call("image_search/query", request({ ...asked, cursor }));
      grid.append(...data.results.map(api.card));
      cursor = data.next_cursor;
      moreResults.hidden = !cursor;
    } catch (err) {
      api.showError(err);
    } finally {
      moreResults.disabled = false;
    }
  }

  function drawParts() {
    const items = [];
    if (liked.length + disliked.length) {
      if (start) items.push(chip(startText(), "start", () => { start = null; search(); }));
      items.push(...liked.map((key) => chip(`like ${key}`, "more", () => drop(liked, key))));
      items.push(...disliked.map((key) => chip(`not like ${key}`, "less", () => drop(disliked, key))));
    }
    parts.replaceChildren(...items);
    parts.hidden = !items.length;
  }

  function drop(list, key) {
    list.splice(list.indexOf(key), 1);
    search();
  }

  function chip(text, kind, onRemove) {
    const item = document.createElement("li");
    item.className = `part ${kind}`;
    const label = document.createElement("span");
    label.textContent = text;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${text} from the search`);
    remove.addEventListener("click", onRemove);
    item.append(label, remove);
    return item;
  }

  moreResults.addEventListener("click", nextPage);
})();
