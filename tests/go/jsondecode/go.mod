module portcullis.test/jsondecode

go 1.19
