//! The field limit: a document selecting more fields than allowed (aliases count,
//! fragments count once per place they are spread) is refused after parsing, before
//! validation and before any resolver runs. Depth and complexity are async-graphql's.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};

use crate::error::{to_graphql_error, ApiError};

/// Installs the field limit on a schema (see [`crate::SchemaOptions::field_limit`]).
pub(crate) struct FieldLimit {
    pub(crate) max_fields: usize,
}

impl ExtensionFactory for FieldLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FieldLimitExt {
            max_fields: self.max_fields,
        })
    }
}

struct FieldLimitExt {
    max_fields: usize,
}

#[async_graphql::async_trait::async_trait]
impl Extension for FieldLimitExt {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let fields = count_fields(&doc);
        if fields > self.max_fields {
            let err = ApiError::BadInput(format!(
                "the query selects {fields} fields; at most {} are allowed (each alias and \
                 each spread of a fragment counts)",
                self.max_fields
            ));
            let e = to_graphql_error(&err, "-");
            let mut server = ServerError::new(e.message, None);
            server.extensions = e.extensions;
            return Err(server);
        }
        Ok(doc)
    }
}

/// Every field the document's operations select, with fragments expanded (saturating;
/// a fragment that spreads itself counts as nothing here, validation refuses it).
pub fn count_fields(doc: &ExecutableDocument) -> usize {
    let mut memo = HashMap::new();
    doc.operations
        .iter()
        .map(|(_, op)| count_set(&op.node.selection_set, &doc.fragments, &mut memo))
        .fold(0usize, usize::saturating_add)
}

type Fragments = HashMap<Name, Positioned<FragmentDefinition>>;

fn count_set(
    set: &Positioned<SelectionSet>,
    fragments: &Fragments,
    memo: &mut HashMap<Name, Option<usize>>,
) -> usize {
    let mut n = 0usize;
    for item in &set.node.items {
        let add = match &item.node {
            Selection::Field(f) => {
                1usize.saturating_add(count_set(&f.node.selection_set, fragments, memo))
            }
            Selection::InlineFragment(f) => count_set(&f.node.selection_set, fragments, memo),
            Selection::FragmentSpread(s) => {
                let name = &s.node.fragment_name.node;
                match memo.get(name) {
                    Some(Some(c)) => *c,
                    // Being counted: a cycle.
                    Some(None) => 0,
                    None => match fragments.get(name) {
                        Some(def) => {
                            memo.insert(name.clone(), None);
                            let c = count_set(&def.node.selection_set, fragments, memo);
                            memo.insert(name.clone(), Some(c));
                            c
                        }
                        None => 0,
                    },
                }
            }
        };
        n = n.saturating_add(add);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::count_fields;

    fn count(q: &str) -> usize {
        count_fields(&async_graphql::parser::parse_query(q).expect("parses"))
    }

    #[test]
    fn aliases_and_fragments_count() {
        assert_eq!(count("{ me { name } }"), 2);
        assert_eq!(count("{ a: me { name } b: me { name role } }"), 5);
        assert_eq!(
            count("{ me { ...F ...F } } fragment F on Me { name role }"),
            5
        );
        assert_eq!(
            count("{ a: me { ...F } b: me { ... on Me { name } } } fragment F on Me { name }"),
            4
        );
        // Nested fragments multiply without being walked again.
        let q = "{ x { ...A ...A } } fragment A on X { ...B ...B } fragment B on X { y z }";
        assert_eq!(count(q), 1 + 2 * (2 * 2));
        // A cycle (refused later by validation) does not loop here.
        assert_eq!(count("{ x { ...A } } fragment A on X { y ...A }"), 2);
    }
}
