//! Finding things in syntax trees: the blocks around an offset, their schemas, and every
//! `${vars.NAME}` reference.

use fly_syntax::ast::{Attribute, Block, Expr, File, InterpExpr, Item, TemplatePart, Traversal};
use fly_types::schema::{BlockSchema, ROOT};

/// The blocks whose bodies contain `offset`, outermost first.
pub fn blocks_at(file: &File, offset: usize) -> Vec<&Block> {
    let mut path = Vec::new();
    let mut items = &file.items;
    'descend: loop {
        for item in items {
            if let Item::Block(b) = item {
                if b.open.end as usize <= offset && offset <= b.close.start as usize {
                    path.push(b);
                    items = &b.items;
                    continue 'descend;
                }
            }
        }
        return path;
    }
}

/// The schema of the innermost block of `path` (the root schema for an empty path).
pub fn schema_of(path: &[&Block]) -> Option<&'static BlockSchema> {
    let mut schema: &'static BlockSchema = &ROOT;
    for b in path {
        schema = schema.block(&b.kind.name)?;
    }
    Some(schema)
}

/// The items directly in the innermost block of `path` (or the file).
pub fn items_of<'a>(file: &'a File, path: &[&'a Block]) -> &'a [Item] {
    path.last()
        .map(|b| b.items.as_slice())
        .unwrap_or(&file.items)
}

/// The attribute (in any block) whose span contains `offset`.
pub fn attribute_at(file: &File, offset: usize) -> Option<(Vec<&Block>, &Attribute)> {
    let path = blocks_at(file, offset);
    items_of(file, &path).iter().find_map(|i| match i {
        Item::Attribute(a) if a.span.contains(offset) => Some((path.clone(), a)),
        _ => None,
    })
}

/// The block whose type name or labels contain `offset`.
pub fn block_header_at(file: &File, offset: usize) -> Option<(Vec<&Block>, &Block)> {
    fn walk<'a>(items: &'a [Item], offset: usize, path: &mut Vec<&'a Block>) -> Option<&'a Block> {
        for item in items {
            if let Item::Block(b) = item {
                if b.kind.span.contains(offset) || b.labels.iter().any(|l| l.span.contains(offset))
                {
                    return Some(b);
                }
                if b.span.contains(offset) {
                    path.push(b);
                    if let Some(found) = walk(&b.items, offset, path) {
                        return Some(found);
                    }
                    path.pop();
                }
            }
        }
        None
    }
    let mut path = Vec::new();
    let b = walk(&file.items, offset, &mut path)?;
    Some((path, b))
}

/// Every traversal (`vars.x`, `env.Y`) in the file, in source order.
pub fn traversals(file: &File) -> Vec<&Traversal> {
    fn expr<'a>(e: &'a Expr, out: &mut Vec<&'a Traversal>) {
        match e {
            Expr::String(t) => template(&t.parts, out),
            Expr::Heredoc(h) => template(&h.template.parts, out),
            Expr::List(l) => l.elems.iter().for_each(|e| expr(e, out)),
            Expr::Map(m) => m.entries.iter().for_each(|e| expr(&e.value, out)),
            _ => {}
        }
    }
    fn template<'a>(parts: &'a [TemplatePart], out: &mut Vec<&'a Traversal>) {
        for p in parts {
            if let TemplatePart::Interpolation(i) = p {
                if let InterpExpr::Traversal(t) = &i.expr {
                    out.push(t);
                }
            }
        }
    }
    fn walk<'a>(items: &'a [Item], out: &mut Vec<&'a Traversal>) {
        for i in items {
            match i {
                Item::Attribute(a) => expr(&a.value, out),
                Item::Block(b) => walk(&b.items, out),
                Item::Error(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&file.items, &mut out);
    out
}

/// The `vars` attributes of a file: name → attribute.
pub fn var_definitions(file: &File) -> Vec<&Attribute> {
    file.items
        .iter()
        .filter_map(|i| match i {
            Item::Block(b) if b.kind.name == "vars" => Some(b),
            _ => None,
        })
        .flat_map(|b| b.items.iter())
        .filter_map(|i| match i {
            Item::Attribute(a) => Some(a),
            _ => None,
        })
        .collect()
}
