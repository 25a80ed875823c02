// The rule form's list of placeholders: shown under the URL templates and refreshed
// from <rule admin>/placeholders/?content_type=<id> when another model is chosen.
// Only textContent is written, never HTML: names come from the project's models.
"use strict";
(function () {
    const box = document.getElementById("roan-placeholders");
    if (!box) {
        return;
    }
    const row = document.querySelector(".form-row.field-templates");
    if (row) {
        (row.querySelector(":scope > div") || row).appendChild(box);
    }
    const select = document.getElementById("id_content_type");
    if (!select) {
        return;
    }
    const title = box.querySelector(".roan-placeholders-title");
    const body = box.querySelector(".roan-placeholders-body");
    const empty = body.querySelector(".roan-placeholders-empty");
    const emptyText = empty ? empty.textContent : "";

    function element(tag, className, text) {
        const node = document.createElement(tag);
        if (className) {
            node.className = className;
        }
        if (text !== undefined) {
            node.textContent = text;
        }
        return node;
    }

    function message(text) {
        body.replaceChildren(element("p", "roan-placeholders-empty help", text));
    }

    function show(listing) {
        title.textContent = box.dataset.title.replace("%s", listing.model);
        const nodes = [];
        for (const group of listing.groups) {
            const heading = element("p", "roan-placeholders-group", group.title);
            if (group.many) {
                heading.append(" ", element("span", "roan-placeholders-many", "(" + box.dataset.many + ")"));
            }
            const list = element("ul", "roan-placeholders-list");
            for (const item of group.placeholders) {
                const li = element("li");
                li.append(element("code", "", item.placeholder), " ", element("span", "", item.about));
                list.append(li);
            }
            nodes.push(heading, list);
        }
        body.replaceChildren(...nodes);
    }

    let asked = 0;
    select.addEventListener("change", function () {
        const chosen = select.value;
        const mine = ++asked;
        if (!chosen) {
            message(emptyText);
            return;
        }
        const url = box.dataset.url + "?content_type=" + encodeURIComponent(chosen);
        fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
            .then(function (response) {
                if (!response.ok) {
                    throw new Error(String(response.status));
                }
                return response.json();
            })
            .then(function (listing) {
                if (mine === asked) {
                    show(listing);
                }
            })
            .catch(function () {
                if (mine === asked) {
                    message(box.dataset.failed);
                }
            });
    });
})();
