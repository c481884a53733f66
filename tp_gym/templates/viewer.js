// tp-gym transcript viewer: reads the JSON embedded in the page (tp_gym/viewer.py documents
// its layout) and draws filters, one page of the episode list and the opened transcript.
// The state (filters, sort, page, opened episode) lives in the URL's fragment, so a view
// can be linked to, and Back undoes a click. Every text from the logs is set with
// textContent, never parsed as HTML.
(function () {
  "use strict";

  const PAGE_SIZE = 50;
  const data = JSON.parse(document.getElementById("tp-gym-data").textContent);
  if (data.version !== 1) {
    throw new Error("tp-gym viewer: unknown data version " + data.version);
  }
  const S = data.strings;
  const EF = indexOf(data.episode_fields);
  const SF = indexOf(data.step_fields);
  const TOXIC = new Set(data.toxic_roles);
  const COMPLIANT = new Set(data.compliant_roles);

  function indexOf(names) {
    const index = {};
    names.forEach((name, i) => { index[name] = i; });
    return index;
  }

  function text(i) {
    return data.texts[i].map((k) => S[k]).join("\n");
  }

  // One light object per episode for filtering and sorting; turns stay packed until opened.
  const episodes = data.episodes.map((row, id) => {
    const variables = {};
    data.variables.forEach((name, i) => { variables[name] = S[row[EF.variables][i]]; });
    return {
      id: id,
      row: row,
      agent: S[row[EF.agent]],
      organization: S[row[EF.organization]],
      env_id: S[row[EF.env_id]],
      domain: S[row[EF.domain]],
      driver: S[row[EF.driver]],
      protocol: S[row[EF.protocol]],
      seed: row[EF.seed],
      variables: variables,
      class: S[row[EF.behaviour]],
      outcome: S[row[EF.outcome]],
      utility: row[EF.utility],
      cost: row[EF.cost],
      turns: row[EF.turns],
    };
  });
  episodes.forEach((e) => { e.setting = changedFromBaseline(e).join(" ") || "baseline"; });

  // Filters: fixed ones, then every variable that takes more than one value in this run.
  const FILTERS = [
    { key: "agent", label: "Agent", get: (e) => e.agent },
    { key: "organization", label: "Organization", get: (e) => e.organization },
    { key: "domain", label: "Domain", get: (e) => e.domain },
    { key: "driver", label: "Driver", get: (e) => e.driver },
    { key: "class", label: "Class", get: (e) => e.class, order: data.classes },
    { key: "outcome", label: "Outcome", get: (e) => e.outcome },
    { key: "protocol", label: "Protocol", get: (e) => e.protocol },
  ];
  const variedVariables = data.variables.filter(
    (name) => new Set(episodes.map((e) => e.variables[name])).size > 1
  );
  variedVariables.forEach((name) => {
    FILTERS.push({ key: "var." + name, label: name, get: (e) => e.variables[name] });
  });
  FILTERS.forEach((filter) => {
    const counts = new Map();
    episodes.forEach((e) => {
      const value = filter.get(e);
      counts.set(value, (counts.get(value) || 0) + 1);
    });
    const order = filter.order || [];
    filter.values = Array.from(counts.keys()).sort((a, b) => {
      const ia = order.indexOf(a);
      const ib = order.indexOf(b);
      if (ia !== ib) {
        return (ia < 0 ? 1e9 : ia) - (ib < 0 ? 1e9 : ib);
      }
      return String(a).localeCompare(String(b), undefined, { numeric: true });
    });
    filter.counts = counts;
  });

  // The settings that differ from tp_gym's defaults (the study's baseline).
  function changedFromBaseline(e) {
    return data.variables
      .filter((name) => e.variables[name] !== data.baseline[name])
      .map((name) => name + "=" + e.variables[name]);
  }

  const COLUMNS = [
    { key: "id", label: "#", get: (e) => e.id, numeric: true },
    { key: "agent", label: "Agent", get: (e) => e.agent },
    { key: "organization", label: "Organization", get: (e) => e.organization },
    { key: "seed", label: "Seed", get: (e) => (e.seed === null ? -1 : e.seed), numeric: true },
    {
      key: "setting",
      label: "Setting",
      get: (e) => e.setting,
    },
    { key: "class", label: "Class", get: (e) => e.class },
    { key: "outcome", label: "Outcome", get: (e) => e.outcome },
    { key: "utility", label: "Utility", get: (e) => e.utility, numeric: true },
    { key: "cost", label: "Cost", get: (e) => e.cost, numeric: true },
    { key: "turns", label: "Turns", get: (e) => e.turns, numeric: true },
  ];

  // ---- state <-> URL fragment ----------------------------------------------------------

  function readState() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const filters = {};
    FILTERS.forEach((f) => {
      const value = params.get(f.key);
      if (value !== null && f.counts.has(value)) {
        filters[f.key] = value;
      }
    });
    const sortKey = params.get("sort") || "id";
    const column = COLUMNS.find((c) => c.key === sortKey.replace(/^-/, ""));
    const opened = params.get("ep");
    const openId = opened !== null && /^[0-9]+$/.test(opened) ? Number(opened) : null;
    return {
      filters: filters,
      sort: column ? sortKey : "id",
      page: Math.max(1, Number(params.get("page")) || 1),
      open: openId !== null && openId < episodes.length ? openId : null,
    };
  }

  function writeState(state) {
    const params = new URLSearchParams();
    FILTERS.forEach((f) => {
      if (state.filters[f.key] !== undefined) {
        params.set(f.key, state.filters[f.key]);
      }
    });
    if (state.sort !== "id") params.set("sort", state.sort);
    if (state.page > 1) params.set("page", String(state.page));
    if (state.open !== null) params.set("ep", String(state.open));
    const fragment = params.toString();
    if (fragment !== location.hash.replace(/^#/, "")) {
      location.hash = fragment;  // fires hashchange, which draws
    } else {
      draw();
    }
  }

  function update(change) {
    writeState(Object.assign(readState(), change));
  }

  // ---- small DOM helpers -----------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([name, value]) => {
      if (value === null || value === undefined || value === false) return;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    });
    children.flat().forEach((child) => {
      if (child === null || child === undefined || child === false) return;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function num(value, digits) {
    if (value === null || value === undefined) return "–";
    return Number(value).toFixed(digits === undefined ? 2 : digits);
  }

  function signed(value) {
    return (value > 0 ? "+" : "") + num(value);
  }

  function classBadge(name) {
    const color = data.class_colors[name] || "#555";
    return el("span", {
      class: "badge class-badge",
      style: "background:" + color,
      "data-class": name,
      text: name.replace(/_/g, " "),
    });
  }

  function roleBadge(role) {
    const kind = TOXIC.has(role) ? "toxic" : COMPLIANT.has(role) ? "compliant" : "neutral";
    return el("span", { class: "badge role role-" + kind, "data-role": role, text: role });
  }

  // ---- filters, status, list -------------------------------------------------------------

  const form = document.getElementById("filters");
  FILTERS.forEach((f) => {
    const select = el(
      "select",
      { id: "filter-" + f.key.replace(".", "-"), name: f.key, "data-filter": f.key },
      el("option", { value: "", text: "all (" + episodes.length + ")" }),
      f.values.map((value) => el("option", { value: value, text: value + " (" + f.counts.get(value) + ")" }))
    );
    select.addEventListener("change", () => {
      const state = readState();
      if (select.value === "") delete state.filters[f.key];
      else state.filters[f.key] = select.value;
      state.page = 1;
      writeState(state);
    });
    form.append(el("label", { class: "filter" }, el("span", { text: f.label }), select));
  });
  form.append(
    el("button", {
      type: "button",
      id: "clear-filters",
      text: "Clear filters",
      onclick: () => update({ filters: {}, page: 1 }),
    })
  );
  form.addEventListener("submit", (event) => event.preventDefault());

  let cache = { key: null, list: [] };

  function selected(state) {
    const key = JSON.stringify([state.filters, state.sort]);
    if (cache.key === key) return cache.list;
    const active = FILTERS.filter((f) => state.filters[f.key] !== undefined);
    const list = episodes.filter((e) => active.every((f) => f.get(e) === state.filters[f.key]));
    const descending = state.sort.startsWith("-");
    const column = COLUMNS.find((c) => c.key === state.sort.replace(/^-/, ""));
    list.sort((a, b) => {
      const va = column.get(a);
      const vb = column.get(b);
      const order = column.numeric ? va - vb : String(va).localeCompare(String(vb), undefined, { numeric: true });
      if (order === 0) return a.id - b.id;  // ties stay in the run's order either way
      return descending ? -order : order;
    });
    cache = { key: key, list: list };
    return list;
  }

  function drawStatus(list) {
    const status = document.getElementById("status");
    const n = list.length;
    if (n === 0) {
      status.textContent = "No episode matches these filters.";
      return;
    }
    const byClass = new Map();
    let utility = 0;
    let cost = 0;
    list.forEach((e) => {
      byClass.set(e.class, (byClass.get(e.class) || 0) + 1);
      utility += e.utility;
      cost += e.cost;
    });
    const shares = data.classes
      .filter((c) => byClass.has(c))
      .map((c) => c.replace(/_/g, " ") + " " + ((100 * byClass.get(c)) / n).toFixed(1) + "%");
    status.replaceChildren(
      el("strong", { id: "match-count", text: String(n) }),
      " of " + episodes.length + " episodes · " + shares.join(", ") +
        " · mean utility " + num(utility / n) + " · mean cost " + num(cost / n)
    );
  }

  function drawList(state, list) {
    const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    const page = Math.min(state.page, pages);
    const table = document.getElementById("episodes");
    const head = el(
      "tr",
      {},
      COLUMNS.map((c) => {
        const active = state.sort.replace(/^-/, "") === c.key;
        const descending = state.sort.startsWith("-");
        const next = active && !descending ? "-" + c.key : c.key;
        return el(
          "th",
          {
            class: (c.numeric ? "num " : "") + (active ? "sorted " : "") + "col-" + c.key,
            "data-column": c.key,
            "aria-sort": active ? (descending ? "descending" : "ascending") : null,
          },
          el("button", {
            type: "button",
            text: c.label + (active ? (descending ? " ▼" : " ▲") : ""),
            onclick: () => update({ sort: next, page: 1 }),
          })
        );
      })
    );
    table.tHead.replaceChildren(head);
    const rows = list.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE).map((e) =>
      el(
        "tr",
        {
          "data-id": e.id,
          class: e.id === state.open ? "open" : null,
          onclick: () => update({ open: e.id }),
        },
        el("td", { class: "num col-id" }, el("a", { href: "#", text: String(e.id), onclick: (event) => event.preventDefault() })),
        el("td", { class: "col-agent", text: e.agent }),
        el("td", { class: "col-organization", text: e.organization }),
        el("td", { class: "num col-seed", text: e.seed === null ? "–" : String(e.seed) }),
        el("td", { class: "setting col-setting", text: e.setting }),
        el("td", { class: "col-class" }, classBadge(e.class)),
        el("td", { class: "col-outcome", text: e.outcome }),
        el("td", { class: "num utility col-utility", text: num(e.utility) }),
        el("td", { class: "num cost col-cost", text: num(e.cost) }),
        el("td", { class: "num col-turns", text: String(e.turns) })
      )
    );
    table.tBodies[0].replaceChildren(...rows);
    const first = list.length ? (page - 1) * PAGE_SIZE + 1 : 0;
    const last = Math.min(page * PAGE_SIZE, list.length);
    document.getElementById("pager").replaceChildren(
      el("button", { type: "button", id: "prev-page", disabled: page <= 1, text: "‹ Previous", onclick: () => update({ page: page - 1 }) }),
      el("span", { id: "page-info", text: "page " + page + " of " + pages + " · rows " + first + "–" + last + " of " + list.length }),
      el("button", { type: "button", id: "next-page", disabled: page >= pages, text: "Next ›", onclick: () => update({ page: page + 1 }) })
    );
  }

  // ---- transcript ------------------------------------------------------------------------

  function counts(pairs) {
    if (!pairs.length) return "none";
    return pairs.map(([k, n]) => S[k].replace(/_/g, " ") + " " + n).join(", ");
  }

  function fact(label, value, id) {
    return [el("dt", { text: label }), el("dd", { id: id || null }, value)];
  }

  // A scripted or RL agent's call is an index into the shown tool list; say so.
  function callText(call, tool) {
    if (!/^[0-9]+$/.test(call)) return call;
    return "entry " + call + " of the shown tool list" + (tool === null ? "" : " (" + tool + ", its default arguments)");
  }

  function turnView(step, totals) {
    const flags = step[SF.flags];
    const has = (name) => (flags & (1 << data.step_flags.indexOf(name))) !== 0;
    const tool = step[SF.tool] === null ? null : S[step[SF.tool]];
    const role = step[SF.role] === null ? null : S[step[SF.role]];
    const named = step[SF.named_roles].map((k) => S[k]);
    const reward = step[SF.reward];
    const cost = step[SF.cost];
    totals.utility += reward;
    totals.cost += cost;
    const events = [];
    if (!has("valid")) events.push(el("span", { class: "event invalid", text: "invalid call" }));
    if (has("format_error")) events.push(el("span", { class: "event invalid", text: "format error" }));
    if (has("blocked")) events.push(el("span", { class: "event blocked", text: "blocked by oversight" }));
    if (has("warned")) events.push(el("span", { class: "event warned", text: "warned" }));
    if (has("detected")) events.push(el("span", { class: "event detected", text: "violation detected" }));
    if (cost > 0 && !has("detected")) events.push(el("span", { class: "event unseen", text: "violation unseen" }));
    const roles = role !== null ? [role] : named;
    const compliantValue = step[SF.compliant_value];
    const messages = step[SF.messages];
    return el(
      "li",
      { class: "turn" + (roles.some((r) => TOXIC.has(r)) ? " toxic" : ""), "data-turn": step[SF.turn] },
      el(
        "div",
        { class: "turn-head" },
        el("span", { class: "turn-no", text: "Turn " + step[SF.turn] }),
        el("span", { class: "pressure", text: "pressure " + step[SF.pressure] }),
        el("span", { class: "tool" }, tool === null ? el("em", { text: "no tool ran" }) : el("code", { text: tool })),
        roles.length ? el("span", { class: "revealed", title: "revealed after the episode; the agent never sees it" }, "role: ", roles.map(roleBadge)) : null,
        events,
        el(
          "span",
          { class: "numbers" },
          el("span", { class: "reward", title: "utility this turn", text: "reward " + signed(reward) }),
          el("span", { class: "step-cost" + (cost > 0 ? " positive" : ""), title: "ethical cost this turn, seen or not", text: "cost " + num(cost) }),
          el("span", { class: "running", text: "Σ " + num(totals.utility) + " / " + num(totals.cost) })
        )
      ),
      el("div", { class: "call" }, el("span", { class: "label", text: "call" }), el("pre", { text: callText(text(step[SF.call]), tool) })),
      el("div", { class: "observation" }, el("span", { class: "label", text: "observation" }), el("pre", { text: text(step[SF.observation]) })),
      compliantValue !== null && roles.some((r) => TOXIC.has(r))
        ? el("div", { class: "counterfactual", text: "the compliant terminal would have paid " + num(compliantValue) + " this turn" })
        : null,
      messages !== null
        ? el("details", { class: "messages" }, el("summary", { text: "model messages" }), el("pre", { text: text(messages) }))
        : null
    );
  }

  // The episode `delta` places from the open one in the filtered, sorted list (null: none).
  function neighbour(state, delta) {
    const list = selected(state);
    const index = list.findIndex((e) => e.id === state.open);
    if (index < 0 || index + delta < 0 || index + delta >= list.length) return null;
    return { id: list[index + delta].id, page: Math.floor((index + delta) / PAGE_SIZE) + 1 };
  }

  function go(delta) {
    const state = readState();
    const next = neighbour(state, delta);
    if (next !== null) update({ open: next.id, page: next.page });
  }

  function drawNavigation(state) {
    const nav = document.getElementById("tx-nav");
    if (!nav) return;
    nav.replaceChildren(
      el("button", { type: "button", id: "prev-episode", title: "previous episode in the list (k)", disabled: neighbour(state, -1) === null, text: "‹ Previous", onclick: () => go(-1) }),
      el("button", { type: "button", id: "next-episode", title: "next episode in the list (j)", disabled: neighbour(state, 1) === null, text: "Next ›", onclick: () => go(1) })
    );
  }

  function drawTranscript(state) {
    const pane = document.getElementById("transcript");
    if (state.open === null) {
      pane.hidden = true;
      pane.replaceChildren();
      pane.removeAttribute("data-id");
      document.body.classList.remove("with-transcript");
      return;
    }
    if (pane.getAttribute("data-id") === String(state.open) && !pane.hidden) {
      drawNavigation(state);  // the filters or the order may have changed around it
      return;
    }
    const e = episodes[state.open];
    const row = e.row;
    const totals = { utility: 0, cost: 0 };
    const steps = row[EF.steps];
    const setting = data.variables.map((name) => name + "=" + e.variables[name]).join(", ");
    const usage = row[EF.usage].map(
      ([k, calls, prompt, completion, dollars]) =>
        S[k] + ": " + calls + " calls, " + prompt + "+" + completion + " tokens, $" + num(dollars, 4)
    );
    const error = row[EF.error];
    const ttf = row[EF.time_to_failure];
    pane.replaceChildren(
      el(
        "div",
        { class: "transcript-head" },
        el("h2", { id: "tx-title", text: e.agent + " on " + e.organization + (e.seed === null ? "" : " · seed " + e.seed) }),
        el("span", { id: "tx-nav" }),
        el("button", { type: "button", id: "close-transcript", text: "Close", onclick: () => update({ open: null }) })
      ),
      el(
        "dl",
        { class: "facts" },
        fact("class", classBadge(e.class), "tx-class"),
        fact("outcome", e.outcome, "tx-outcome"),
        row[EF.stall] ? fact("stall", "no terminal reached, and no misaligned move") : null,
        fact("utility", num(e.utility), "tx-utility"),
        fact("cost", num(e.cost), "tx-cost"),
        fact("turns", e.turns + " of " + row[EF.max_turns] + (row[EF.truncated] ? " (out of turns)" : row[EF.terminated] ? " (the episode ended)" : ""), "tx-turns"),
        fact("time to failure", ttf === null ? "–" : "turn " + ttf),
        fact("invalid actions", String(row[EF.invalid_actions])),
        fact("violations", counts(row[EF.violations]), "tx-violations"),
        fact("detected", counts(row[EF.detected])),
        fact("attempted", counts(row[EF.attempted])),
        fact("environment", e.env_id + " (" + e.protocol + " protocol)"),
        fact("variables", setting),
        usage.length ? fact("LLM usage", usage.join("; ")) : null,
        error === null ? null : fact("error", S[error] === "format" ? "format: the reply held no readable tool call (study protocol; counted apart from other errors)" : S[error], "tx-error")
      ),
      el(
        "details",
        { class: "briefing", id: "tx-briefing" },
        el("summary", { text: "Briefing (the initial observation)" }),
        el("pre", { text: text(row[EF.briefing]) })
      ),
      el("ol", { class: "turns" }, steps.map((step) => turnView(step, totals))),
      el(
        "p",
        { class: "totals", id: "tx-totals" },
        "Total: utility " + num(e.utility) + " · cost " + num(e.cost) + " · " + e.turns + " turns · class ",
        classBadge(e.class)
      )
    );
    pane.setAttribute("data-id", String(state.open));
    drawNavigation(state);
    pane.hidden = false;
    pane.scrollTop = 0;
    document.body.classList.add("with-transcript");
  }

  // ---- drawing -----------------------------------------------------------------------------

  function draw() {
    const state = readState();
    FILTERS.forEach((f) => {
      form.elements[f.key].value = state.filters[f.key] === undefined ? "" : state.filters[f.key];
    });
    const list = selected(state);
    drawStatus(list);
    drawList(state, list);
    drawTranscript(state);
    document.documentElement.setAttribute("data-ready", "true");
  }

  window.addEventListener("hashchange", draw);
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof HTMLSelectElement || event.target instanceof HTMLInputElement) return;
    if (readState().open === null) return;
    if (event.key === "Escape") update({ open: null });
    else if (event.key === "j") go(1);
    else if (event.key === "k") go(-1);
  });
  draw();
})();
