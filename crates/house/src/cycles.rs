//! Import cycles, package by package and folder by folder. An edge
//! between two packages is an edge of the package graph (`(packages)` in
//! reports). Within a package, an edge between two files lands in the
//! folder that is their lowest common ancestor, as an edge between the two
//! children of that folder that hold them (a file or a subfolder). A cycle
//! among packages, or among the children of any folder, is a violation:
//! between the folders of a crate, or between the files of one folder, a
//! `mod.rs` included.

use std::collections::{BTreeMap, BTreeSet};

use crate::modtree::Edge;

/// Children of one folder and the edges between them, each with the first
/// evidence seen.
type FolderGraph = BTreeMap<String, BTreeMap<String, String>>;

/// The folder two files meet in, and the child of it holding each.
fn meet(a: &str, b: &str) -> (String, String, String) {
    let pa: Vec<&str> = a.split('/').collect();
    let pb: Vec<&str> = b.split('/').collect();
    let mut k = 0;
    while k + 1 < pa.len() && k + 1 < pb.len() && pa[k] == pb[k] {
        k += 1;
    }
    let folder = if k == 0 { ".".to_string() } else { pa[..k].join("/") };
    (folder, pa[k].to_string(), pb[k].to_string())
}

/// Every cycle, one message per folder and strongly connected group.
pub fn find(edges: &[Edge]) -> Vec<String> {
    let mut folders: BTreeMap<String, FolderGraph> = BTreeMap::new();
    for e in edges {
        // Between packages, the nodes are the packages (a folder such as
        // `crates/` holds packages of every layer); within one, folders.
        let (folder, a, b) = if e.from_package != e.to_package {
            ("(packages)".to_string(), e.from_package.clone(), e.to_package.clone())
        } else {
            meet(&e.from, &e.to)
        };
        folders.entry(folder).or_default().entry(a).or_default().entry(b).or_insert_with(|| e.evidence.clone());
    }
    let mut out = Vec::new();
    for (folder, graph) in &folders {
        for scc in strongly_connected(graph) {
            if scc.len() > 1 {
                out.push(describe(folder, graph, &scc));
            }
        }
    }
    out
}

/// Tarjan's algorithm, iterative over a small graph.
fn strongly_connected(graph: &FolderGraph) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph.keys().chain(graph.values().flat_map(|m| m.keys())).collect();
    let nodes: Vec<&String> = nodes.into_iter().collect();
    let idx = |n: &String| nodes.iter().position(|m| *m == n).unwrap_or(0);
    let succ: Vec<Vec<usize>> =
        nodes.iter().map(|n| graph.get(*n).map(|m| m.keys().map(idx).collect()).unwrap_or_default()).collect();
    let n = nodes.len();
    let (mut index, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut out, mut next) = (Vec::new(), Vec::new(), 0);
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(start, 0)];
        index[start] = next;
        low[start] = next;
        next += 1;
        stack.push(start);
        on[start] = true;
        while let Some(&mut (v, ref mut k)) = call.last_mut() {
            if let Some(&w) = succ[v].get(*k) {
                *k += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    call.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(u, _)) = call.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                let mut scc = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    scc.push(nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                scc.sort();
                out.push(scc);
            }
        }
    }
    out
}

/// One shortest cycle through the group's first member, with evidence.
fn describe(folder: &str, graph: &FolderGraph, scc: &[String]) -> String {
    let members: BTreeSet<&String> = scc.iter().collect();
    let start = &scc[0];
    // Breadth-first from start back to start, inside the group.
    let mut prev: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut last = None;
    'search: while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flat_map(|m| m.keys()) {
            if !members.contains(w) {
                continue;
            }
            if w == start {
                last = Some(v);
                break 'search;
            }
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut path = vec![start];
    let mut v = last.unwrap_or(start);
    while v != start {
        path.push(v);
        v = prev.get(v).copied().unwrap_or(start);
    }
    path[1..].reverse();
    path.push(start);
    let place = if folder.starts_with('(') { folder.to_string() } else { format!("{folder}/") };
    let mut msg = format!("import cycle in {place} among {{{}}}:", scc.join(", "));
    for w in path.windows(2) {
        let ev = graph.get(w[0]).and_then(|m| m.get(w[1])).map_or("", String::as_str);
        msg.push_str(&format!("\n    {} -> {}   ({ev})", w[0], w[1]));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(a: &str, b: &str) -> Edge {
        Edge {
            from_package: "p".into(),
            to_package: "p".into(),
            from: a.into(),
            to: b.into(),
            evidence: format!("{a}:1"),
        }
    }

    #[test]
    fn files_meet_in_their_lowest_common_folder() {
        assert_eq!(
            meet("src/core/raft.rs", "src/core/read.rs"),
            ("src/core".into(), "raft.rs".into(), "read.rs".into())
        );
        assert_eq!(meet("src/node/mod.rs", "src/pipeline/fsm.rs"), ("src".into(), "node".into(), "pipeline".into()));
        assert_eq!(meet("bin/a.rs", "src/lib.rs"), (".".into(), "bin".into(), "src".into()));
    }

    #[test]
    fn a_cycle_between_folders_is_found_and_a_chain_is_not() {
        let chain = [edge("src/a/x.rs", "src/b/y.rs"), edge("src/b/y.rs", "src/c/z.rs")];
        assert!(find(&chain).is_empty());
        let cycle = [edge("src/a/x.rs", "src/b/y.rs"), edge("src/b/z.rs", "src/a/w.rs")];
        let found = find(&cycle);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("import cycle in src/ among {a, b}"), "{}", found[0]);
    }

    #[test]
    fn a_three_file_cycle_prints_each_edge() {
        let cycle = [edge("d/a.rs", "d/b.rs"), edge("d/b.rs", "d/c.rs"), edge("d/c.rs", "d/a.rs")];
        let found = find(&cycle);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].matches(" -> ").count(), 3, "{}", found[0]);
    }
}
