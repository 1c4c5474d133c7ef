//! Documents the renderers' tests share.

use crate::document::{Block, Document, Lang};

/// Markup, Markdown structure at every line start, quotes and control
/// characters: text a hostile reporter could type into any field.
pub(crate) const HOSTILE: &str = "<script>alert(1)</script> \"q\" 'a' | pipe | ``` \
    [link](javascript:x) *b* _i_ ~s~ $x$ &amp; \u{0}\u{1b}\u{7f}\u{85}end\n\
    # heading\n- item\n+ plus\n> quote\n1. one\n===\n<img src=x onerror=alert(1)>";

/// Every kind of block, each holding hostile text.
pub(crate) fn hostile_document() -> Document {
    let hostile = || HOSTILE.to_string();
    Document {
        lang: Lang::En,
        title: hostile(),
        blocks: vec![
            Block::Heading {
                level: 1,
                text: hostile(),
            },
            Block::Heading {
                level: 2,
                text: hostile(),
            },
            Block::Heading {
                level: 3,
                text: hostile(),
            },
            Block::Paragraph { text: hostile() },
            Block::Fields {
                fields: vec![(hostile(), hostile())],
            },
            Block::List {
                ordered: false,
                items: vec![hostile()],
            },
            Block::List {
                ordered: true,
                items: vec![hostile()],
            },
            Block::Checklist {
                items: vec![(true, hostile()), (false, hostile())],
            },
            Block::Table {
                headers: vec![hostile(), "b".into()],
                rows: vec![vec![hostile(), hostile()], vec!["x".into(), hostile()]],
            },
            Block::Code {
                text: "```\n<script>alert(1)</script>".into(),
            },
            Block::Rule,
        ],
    }
}

/// A short 始末書 with one block of each kind.
pub(crate) fn sample_document() -> Document {
    let text = |s: &str| s.to_string();
    Document {
        lang: Lang::Ja,
        title: text("始末書（システム障害について）"),
        blocks: vec![
            Block::Fields {
                fields: vec![
                    (text("提出日"), text("令和7年4月1日")),
                    (text("所属"), text("情報システム部")),
                    (text("氏名"), text("山田 太郎")),
                ],
            },
            Block::Heading {
                level: 1,
                text: text("事案の概要"),
            },
            Block::Paragraph {
                text: text(
                    "令和7年3月28日14時05分頃、基幹データベースの定期メンテナンス作業中に\
                     誤ったコマンドを実行し、受注データの一部が消失しました。\n\
                     復旧は同日18時30分に完了しています。",
                ),
            },
            Block::Heading {
                level: 2,
                text: text("経緯"),
            },
            Block::Table {
                headers: vec![text("日時"), text("内容"), text("担当")],
                rows: vec![
                    vec![
                        text("14:05"),
                        text("DELETE 文を WHERE 句なしで実行"),
                        text("山田"),
                    ],
                    vec![
                        text("14:20"),
                        text("監視アラート（エラー率 35%）を受信"),
                        text("佐藤"),
                    ],
                    vec![
                        text("18:30"),
                        text("バックアップから復旧完了"),
                        text("山田"),
                    ],
                ],
            },
            Block::Heading {
                level: 2,
                text: text("影響範囲"),
            },
            Block::Checklist {
                items: vec![
                    (true, text("受注データの消失")),
                    (false, text("個人情報の漏えい")),
                    (true, text("サービスの停止（約4時間）")),
                ],
            },
            Block::Heading {
                level: 2,
                text: text("再発防止策"),
            },
            Block::List {
                ordered: true,
                items: vec![
                    text("本番環境での手作業を禁止し、手順書に基づくレビューを必須とする。"),
                    text("削除系のコマンドには確認を求める設定を入れる。"),
                ],
            },
            Block::List {
                ordered: false,
                items: vec![text("教育：全員に研修を実施"), text("点検：毎月")],
            },
            Block::Heading {
                level: 3,
                text: text("実行したコマンド"),
            },
            Block::Code {
                text: text("DELETE FROM orders;\n-- WHERE 句が抜けていた"),
            },
            Block::Rule,
            Block::Paragraph {
                text: text("以上、深くお詫び申し上げます。"),
            },
        ],
    }
}

/// A 4-column table of Japanese text with `rows` rows.
pub(crate) fn table_document(rows: usize) -> Document {
    Document {
        lang: Lang::Ja,
        title: "対応記録".into(),
        blocks: vec![
            Block::Heading {
                level: 1,
                text: "時系列".into(),
            },
            Block::Table {
                headers: ["番号", "日時", "内容", "担当者"]
                    .map(String::from)
                    .to_vec(),
                rows: (1..=rows)
                    .map(|row| {
                        vec![
                            format!("{row}"),
                            "令和7年4月1日 10:00".into(),
                            format!(
                                "第{row}行：データベースの応答遅延を検知し、担当者へ連絡した。"
                            ),
                            "山田 太郎".into(),
                        ]
                    })
                    .collect(),
            },
        ],
    }
}
